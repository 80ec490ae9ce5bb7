//! Accounts (issue 12): groups of customers that Segment's `group` (or an event named `group`)
//! sets.

use crate::{Millis, Object};
use serde::{Deserialize, Serialize};

/// The answer to `GET /v1/accounts/{id}`: the account's traits and a page of its members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Account {
    /// The tenant's id for the account (Segment's `groupId`).
    pub id: String,
    /// Every `group` call's traits, merged (a key given replaces the stored value).
    pub traits: Object,
    /// When a `group` call first named it.
    pub created_at: Millis,
    /// When a `group` call last named it.
    pub updated_at: Millis,
    /// Member customer ids, in id order, after the query's `after`.
    pub members: Vec<String>,
    /// The `after` of the next page, when more members follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// The account's enrollments in account journeys (issue 12: a journey whose subject is
    /// `account`), one per run; each names the account's subject key `account:<id>` as its
    /// customer.
    #[serde(default)]
    pub enrollments: Vec<crate::customers::Enrollment>,
}

/// The query of `GET /v1/accounts/{id}` (`?after=ada&limit=100`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AccountQuery {
    /// Members after this customer id (the previous page's `next_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many members (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}
