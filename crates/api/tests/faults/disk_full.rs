//! The SQLite file's filesystem filling up (a small tmpfs): writes are refused with a clear
//! 503, nothing is half-written, and the server writes again once space is freed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chatstore_tests::ServerProcess;

use crate::{assert_unavailable, batch_items, binary, client, post_items, read_items};

/// A tmpfs of a few megabytes, unmounted and removed when dropped.
#[derive(Debug)]
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts one (as root only). `None` when mounting is not allowed here, outside CI.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir =
            std::env::temp_dir().join(format!("chatstore-full-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self { dir }),
            outcome => {
                let _ = std::fs::remove_dir(&dir);
                let why = format!("cannot mount a tmpfs (root is needed): {outcome:?}");
                assert!(!chatstore_tests::in_ci(), "CI=true but {why}");
                eprintln!("!! SKIPPING the disk-full test: {why}");
                None
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.dir).status();
        if !unmounted.is_ok_and(|status| status.success()) {
            // Still in use (a server that has not exited yet): detach it now, freed later.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the filesystem of `path` with that file until no byte more fits.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Whatever is left is smaller than a chunk: take it byte by byte.
    while file.write(&[0]).is_ok_and(|written| written == 1) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_with_503_and_keeps_only_whole_batches() {
    const BATCH: usize = 50;
    let Some(tmpfs) = Tmpfs::mount(4) else { return };
    let url = format!("sqlite://{}?mode=rwc", tmpfs.path("chat.db").display());
    let server = ServerProcess::start(binary(), &url, &[]);
    let client = client();
    let address = server.address.clone();
    let mut acknowledged = Vec::new();
    for batch in 0..3 {
        let id = format!("before-{batch}");
        let answer =
            post_items(&client, &address, "s", &batch_items(&id, BATCH, 1000), None).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text);
        acknowledged.push(id);
    }

    let filler = tmpfs.path("filler");
    fill(&filler);
    // Writes go on until SQLite has no room left, then every one is refused with a 503.
    let mut refused = Vec::new();
    for batch in 0..100 {
        let id = format!("full-{batch}");
        let answer =
            post_items(&client, &address, "s", &batch_items(&id, BATCH, 1000), None).await.unwrap();
        if answer.status == 200 {
            acknowledged.push(id);
        } else {
            assert_unavailable(&answer);
            refused.push(id);
            if refused.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(refused.len(), 3, "the full disk never refused a write");
    // Reads still work, and show only whole, acknowledged batches.
    let stored = crate::whole_batches(&read_items(&client, &address, "s").await, BATCH);
    assert_eq!(stored, acknowledged, "a refused batch was stored, or an acknowledged one lost");

    std::fs::remove_file(&filler).unwrap();
    // Serving again once there is room, without a restart.
    let started = Instant::now();
    loop {
        let answer = post_items(&client, &address, "s", &batch_items("after", BATCH, 1000), None)
            .await
            .unwrap();
        if answer.status == 200 {
            acknowledged.push("after".to_owned());
            break;
        }
        assert_unavailable(&answer);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no write went through after freeing space"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = crate::whole_batches(&read_items(&client, &address, "s").await, BATCH);
    assert_eq!(stored, acknowledged);
    server.stop();
    drop(tmpfs);
}
