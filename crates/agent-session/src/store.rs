//! A session over chatstore's repositories, for agents that link the library.

use repositories::Db;

use crate::{Item, Session, SessionError, SessionSettings};

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
