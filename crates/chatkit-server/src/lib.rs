//! The ChatKit protocol engine: what `chatkit.server.ChatKitServer.process()` does, over the
//! store of `repositories::chatkit`, without HTTP.

pub mod wire;
