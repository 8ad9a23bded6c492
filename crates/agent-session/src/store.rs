//! A session over chatstore's repositories, for agents that link the library.

use repositories::{Db, Line, RepoError, TailReplace};

use crate::{CompactableSession, CompactionSnapshot, Item, Session, SessionError, SessionSettings};

/// A session stored in chatstore's database, owned by one user.
#[derive(Debug, Clone)]
pub struct StoreSession {
    db: Db,
    user_id: String,
    session_id: String,
    settings: SessionSettings,
}

impl StoreSession {
    pub fn new(db: Db, user_id: impl Into<String>, session_id: impl Into<String>) -> Self {
        Self {
            db,
            user_id: user_id.into(),
            session_id: session_id.into(),
            settings: SessionSettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: SessionSettings) -> Self {
        self.settings = settings;
        self
    }
}

#[async_trait::async_trait]
impl Session for StoreSession {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn settings(&self) -> SessionSettings {
        self.settings
    }

    async fn get_items(&self, limit: Option<usize>) -> Result<Vec<Item>, SessionError> {
        let sessions = self.db.sessions();
        let texts = match self.settings.resolve(limit) {
            Some(limit) => {
                let limit = u64::try_from(limit).unwrap_or(u64::MAX);
                sessions.latest_items(&self.user_id, &self.session_id, limit).await?
            }
            None => sessions.all_items(&self.user_id, &self.session_id).await?,
        };
        texts.iter().map(|text| Item::from_json(text)).collect()
    }

    async fn add_items(&self, items: &[Item]) -> Result<(), SessionError> {
        let texts: Vec<&str> = items.iter().map(Item::as_json).collect();
        self.db.sessions().add_items(&self.user_id, &self.session_id, &texts, None).await?;
        Ok(())
    }

    async fn pop_item(&self) -> Result<Option<Item>, SessionError> {
        let popped = self.db.sessions().pop_item(&self.user_id, &self.session_id).await?;
        popped.as_deref().map(Item::from_json).transpose()
    }

    async fn clear_session(&self) -> Result<(), SessionError> {
        Ok(self.db.sessions().clear(&self.user_id, &self.session_id).await?)
    }
}

#[async_trait::async_trait]
impl CompactableSession for StoreSession {
    async fn compaction_snapshot(&self, limit: usize) -> Result<CompactionSnapshot, SessionError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let read = self
            .db
            .memory()
            .snapshot(&self.user_id, &self.session_id, Line::Main, limit, None)
            .await?;
        let first_position = read.items.first().map(|item| item.position);
        let complete = first_position.is_none_or(|first| first == read.state.position_base + 1);
        let items =
            read.items.iter().map(|item| Item::from_json(&item.data)).collect::<Result<_, _>>()?;
        Ok(CompactionSnapshot { items, complete, revision: read.state.revision, first_position })
    }

    async fn replace_suffix(
        &self,
        snapshot: &CompactionSnapshot,
        start: usize,
        items: &[Item],
        prune_leading: usize,
    ) -> Result<bool, SessionError> {
        let Some(after_position) = snapshot.replace_after(start) else { return Ok(false) };
        let texts: Vec<&str> = items.iter().map(Item::as_json).collect();
        let change = TailReplace {
            revision: snapshot.revision,
            after_position,
            prune_leading: i64::try_from(prune_leading).unwrap_or(i64::MAX),
            items: &texts,
        };
        match self
            .db
            .memory()
            .replace_tail(&self.user_id, &self.session_id, Line::Main, change)
            .await
        {
            Ok(_) => Ok(true),
            Err(RepoError::Conflict(_) | RepoError::NotFound(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}
