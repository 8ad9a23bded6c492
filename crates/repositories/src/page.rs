//! Keyset pages, as every list of the API returns them.

use std::fmt;
use std::str::FromStr;

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Query};
use sea_orm::{EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

use crate::{RepoError, RepoResult};

/// Which way a list runs, by the list's key: the one order of every list (chats, ChatKit
/// threads and thread items), in the API and in the ChatKit protocol alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    /// The direction of an `ORDER BY`.
    pub(crate) fn sql(self) -> sea_orm::Order {
        match self {
            Self::Asc => sea_orm::Order::Asc,
            Self::Desc => sea_orm::Order::Desc,
        }
    }
}

impl FromStr for Order {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            _ => Err(RepoError::Invalid(format!("order must be `asc` or `desc`, not `{text}`"))),
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One page of a list: `after` is the id of the last element when there is more to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub after: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows read in list order: the extra row only says
    /// that there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: u64, id_of: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let after = if has_more { rows.last().map(id_of) } else { None };
        Self { data: rows, has_more, after }
    }
}

/// The name the cursor's row goes by in a keyset page's key subquery.
pub(crate) fn cursor_alias() -> Alias {
    Alias::new("cursor")
}

/// The row a keyset page starts after: named by its column values, and, when the list is
/// narrower than equal columns can say (chats with given tags), also passing `condition`,
/// which refers to the row as [`cursor_alias`].
pub(crate) struct KeysetCursor<E: EntityTrait> {
    columns: Vec<(E::Column, sea_orm::Value)>,
    condition: Condition,
}

impl<E: EntityTrait> KeysetCursor<E> {
    pub(crate) fn new(columns: Vec<(E::Column, sea_orm::Value)>) -> Self {
        Self { columns, condition: Condition::all() }
    }

    /// The cursor's row must also pass `condition`, written against [`cursor_alias`].
    pub(crate) fn and(mut self, condition: Condition) -> Self {
        self.condition = self.condition.add(condition);
        self
    }
}

impl<E: EntityTrait> From<Vec<(E::Column, sea_orm::Value)>> for KeysetCursor<E> {
    fn from(columns: Vec<(E::Column, sea_orm::Value)>) -> Self {
        Self::new(columns)
    }
}

/// A keyset page query, the one shape of every list (chats, ChatKit threads and items):
/// `query`'s rows ordered by `key` (whose last column makes it unique) in `order`, at most
/// `rows` of them, after the row that `cursor` names by its column values, exclusive. The
/// cursor's key is looked up inside the same statement, so a page is one round trip however
/// deep it is; a cursor that names no row makes the page empty (see [`finish_page`]).
pub(crate) fn keyset_query<E: EntityTrait>(
    mut query: Select<E>,
    key: [E::Column; 2],
    cursor: Option<impl Into<KeysetCursor<E>>>,
    order: Order,
    rows: u64,
) -> Select<E> {
    if let Some(cursor) = cursor {
        query = query.filter(keyset_after::<E>(key, cursor, order));
    }
    let [first, last] = key;
    query.order_by(first, order.sql()).order_by(last, order.sql()).limit(rows)
}

/// Rows whose `key` comes after the key of the row `cursor` names by its column values, in
/// `order`; no row when it names none. The cursor's key is a subquery of the same statement.
pub(crate) fn keyset_after<E: EntityTrait>(
    key: [E::Column; 2],
    cursor: impl Into<KeysetCursor<E>>,
    order: Order,
) -> Expr {
    let cursor = cursor.into();
    let position = Expr::tuple(key.map(|column| Expr::col((E::default(), column))));
    let mut select = Query::select();
    select.columns(key.map(|column| (cursor_alias(), column)));
    select.from_as(E::default(), cursor_alias());
    for (column, value) in cursor.columns {
        select.and_where(Expr::col((cursor_alias(), column)).eq(value));
    }
    select.cond_where(cursor.condition);
    let bound = Expr::SubQuery(None, Box::new(select.into()));
    match order {
        Order::Asc => position.gt(bound),
        Order::Desc => position.lt(bound),
    }
}

/// The page of up to `limit + 1` rows a [`keyset_query`] read. An empty page after a cursor is
/// the end of the list, or a cursor naming nothing in it: `cursor_exists` tells which, and the
/// latter is `Invalid` ("`after` names no {`element`}").
pub(crate) async fn finish_page<T>(
    rows: Vec<T>,
    limit: u64,
    after: Option<&str>,
    element: &str,
    cursor_exists: impl AsyncFnOnce() -> RepoResult<bool>,
    id_of: impl Fn(&T) -> String,
) -> RepoResult<Page<T>> {
    if let Some(after) = after
        && rows.is_empty()
        && !cursor_exists().await?
    {
        return Err(RepoError::Invalid(format!("`after` ({after:?}) names no {element}")));
    }
    Ok(Page::from_rows(rows, limit, id_of))
}
