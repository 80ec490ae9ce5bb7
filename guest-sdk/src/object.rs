//! [`JsonObject`]: a customer's attributes or an event's properties, kept as the JSON text the
//! host sent and parsed on first use.
//!
//! Why lazy: `decide` runs for every trigger, and most triggers never look at the customer's
//! attributes (a timer that sends a fixed nudge, an event that records a milestone). Parsing
//! the attributes into a map on every call was the largest single cost of a warm `decide` of
//! the onboarding journey (see `docs/BENCHMARKS.md`, "The journey sandbox made fast"). Now a
//! journey that never reads them never parses them, and one that does parses them once.
//!
//! To a journey a `JsonObject` reads like the [`Object`] it holds: it dereferences to one
//! (`get`, `iter`, `contains_key`, `len`, ...), indexes like a [`Value`] does (a missing key
//! is `Value::Null`, not a panic), serializes as that object and compares with objects and
//! values.
//!
//! ```
//! use waymark_guest::{json, JsonObject};
//!
//! let attributes = JsonObject::from_json(r#"{"email": "ada@example.com"}"#.to_string());
//! assert_eq!(attributes.get("email"), Some(&json!("ada@example.com"))); // parsed here, once
//! assert_eq!(attributes["plan"], json!(null));
//! assert_eq!(attributes, json!({"email": "ada@example.com"}));
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut, Index};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::context::Object;

/// A JSON object parsed on first use: the customer's attributes, an event's properties.
///
/// Built from the host's JSON text by the SDK's glue ([`from_json`](Self::from_json)), or from
/// values in tests ([`new`](Self::new), `From<Object>`, [`insert`](Object::insert) through
/// `DerefMut`). Text that is not a JSON object reads as an empty object and records why
/// ([`read_error`](Self::read_error)): the glue then fails the call that read it with that
/// message, so a journey never decides on data it could not read, and never panics on it.
#[derive(Clone, Default)]
pub struct JsonObject {
    /// The JSON text as received; empty once the object was built or changed in code.
    text: String,
    /// The object, once read.
    parsed: OnceLock<Parsed>,
}

#[derive(Clone)]
struct Parsed {
    object: Object,
    /// Why `text` did not read as an object (then `object` is empty).
    error: Option<String>,
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> Self {
        Object::new().into()
    }

    /// An object kept as `text` until first read. `null` reads as `{}`; anything else that is
    /// not a JSON object reads as `{}` with a [`read_error`](Self::read_error).
    pub fn from_json(text: String) -> Self {
        JsonObject {
            text,
            parsed: OnceLock::new(),
        }
    }

    /// The object, parsed now if this is its first read.
    pub fn object(&self) -> &Object {
        &self.parsed().object
    }

    /// The object, or why the text is not one; parses now if this is its first read.
    pub fn try_object(&self) -> Result<&Object, &str> {
        let parsed = self.parsed();
        match &parsed.error {
            Some(error) => Err(error),
            None => Ok(&parsed.object),
        }
    }

    /// The object, for changing it (parsed now if this is its first read).
    pub fn object_mut(&mut self) -> &mut Object {
        self.parsed();
        self.text.clear();
        match self.parsed.get_mut() {
            Some(parsed) => &mut parsed.object,
            // `parsed()` above has just filled the cell.
            None => unreachable!("the object was parsed above"),
        }
    }

    /// The object, owned.
    pub fn into_object(self) -> Object {
        self.parsed();
        self.parsed
            .into_inner()
            .map(|parsed| parsed.object)
            .unwrap_or_default()
    }

    /// Whether the object has been read (and so parsed) yet.
    pub fn is_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }

    /// Why the text did not read as a JSON object, if it was read and did not. `None` when it
    /// has not been read: this never parses (the glue asks it after `decide`, and must not
    /// parse what the journey did not read).
    pub fn read_error(&self) -> Option<&str> {
        self.parsed.get().and_then(|p| p.error.as_deref())
    }

    fn parsed(&self) -> &Parsed {
        self.parsed.get_or_init(|| parse(&self.text))
    }
}

fn parse(text: &str) -> Parsed {
    let (object, error) = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => (map, None),
        Ok(Value::Null) => (Object::new(), None),
        Ok(other) => (
            Object::new(),
            Some(format!("must be a JSON object, not {}", json_kind(&other))),
        ),
        Err(e) => (Object::new(), Some(format!("is not valid JSON: {e}"))),
    };
    Parsed { object, error }
}

/// What kind of JSON value this is, for errors.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl From<Object> for JsonObject {
    fn from(object: Object) -> Self {
        JsonObject {
            text: String::new(),
            parsed: OnceLock::from(Parsed {
                object,
                error: None,
            }),
        }
    }
}

impl From<JsonObject> for Object {
    fn from(object: JsonObject) -> Self {
        object.into_object()
    }
}

impl From<JsonObject> for Value {
    fn from(object: JsonObject) -> Self {
        Value::Object(object.into_object())
    }
}

impl FromIterator<(String, Value)> for JsonObject {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Object::from_iter(iter).into()
    }
}

impl Deref for JsonObject {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object()
    }
}

impl DerefMut for JsonObject {
    fn deref_mut(&mut self) -> &mut Object {
        self.object_mut()
    }
}

/// `object["key"]` is `Value::Null` for a missing key, as on a [`Value`] (a bare [`Object`]
/// would panic).
impl Index<&str> for JsonObject {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.object().get(key).unwrap_or(&NULL)
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.object().fmt(f)
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.object() == other.object()
    }
}

impl PartialEq<Object> for JsonObject {
    fn eq(&self, other: &Object) -> bool {
        self.object() == other
    }
}

impl PartialEq<Value> for JsonObject {
    fn eq(&self, other: &Value) -> bool {
        other.as_object() == Some(self.object())
    }
}

/// As the object. Text not read yet goes out as it came, once checked to be one JSON object
/// (a scan, no allocation): a journey that passes the event's properties on in a payload
/// (`json!({"signup": signup.properties})`) then does not parse them into a map only to copy
/// that map into the payload. Text that fails the check is parsed, which records its error
/// for the glue, as any other read does.
impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(raw) = self.unread_object_text() {
            return raw.serialize(serializer);
        }
        self.object().serialize(serializer)
    }
}

impl JsonObject {
    /// The text, if it has not been read yet and is one JSON object.
    fn unread_object_text(&self) -> Option<&RawValue> {
        if self.is_parsed() {
            return None;
        }
        let raw: &RawValue = serde_json::from_str(&self.text).ok()?;
        raw.get().starts_with('{').then_some(raw)
    }
}

/// From a JSON object; `null` is `{}`, as the host's text reads.
impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<Object>::deserialize(deserializer)?
            .unwrap_or_default()
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_parsed_on_first_read_and_only_then() {
        let attributes = JsonObject::from_json(r#"{"plan":"pro","seats":3}"#.into());
        assert!(!attributes.is_parsed());
        assert_eq!(
            attributes.read_error(),
            None,
            "asking for the error parses nothing"
        );
        assert!(!attributes.is_parsed());

        assert_eq!(attributes.get("plan"), Some(&json!("pro")));
        assert!(attributes.is_parsed());
        assert_eq!(attributes["seats"], json!(3));
        assert_eq!(attributes["missing"], Value::Null);
        assert_eq!(attributes.len(), 2);
    }

    #[test]
    fn null_reads_as_an_empty_object() {
        let attributes = JsonObject::from_json("null".into());
        assert!(attributes.is_empty());
        assert_eq!(attributes.read_error(), None);
        assert_eq!(attributes.try_object(), Ok(&Object::new()));
    }

    #[test]
    fn text_that_is_not_an_object_reads_empty_and_says_why() {
        let malformed = JsonObject::from_json("{not json".into());
        assert!(malformed.get("x").is_none());
        assert!(malformed
            .read_error()
            .unwrap()
            .starts_with("is not valid JSON"));

        let array = JsonObject::from_json("[1]".into());
        assert_eq!(
            array.try_object(),
            Err("must be a JSON object, not an array")
        );
        assert_eq!(
            array.read_error(),
            Some("must be a JSON object, not an array")
        );
    }

    #[test]
    fn changes_apply_to_the_parsed_object() {
        let mut attributes = JsonObject::from_json(r#"{"a":1}"#.into());
        attributes.insert("b".into(), json!(2));
        assert_eq!(attributes, json!({"a": 1, "b": 2}));
        assert_eq!(Value::from(attributes), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn serializes_and_deserializes_as_the_object() {
        let attributes = JsonObject::from_json(r#"{"email":"a@b"}"#.into());
        assert_eq!(
            serde_json::to_value(&attributes).unwrap(),
            json!({"email": "a@b"})
        );
        let back: JsonObject = serde_json::from_value(json!({"email": "a@b"})).unwrap();
        assert_eq!(back, attributes);
        let none: JsonObject = serde_json::from_value(Value::Null).unwrap();
        assert!(none.is_empty());
        assert!(serde_json::from_value::<JsonObject>(json!([1])).is_err());
    }

    #[test]
    fn unread_text_is_written_out_as_it_came_and_still_checked() {
        let unread = JsonObject::from_json(r#"{"plan":"pro","n":[1,2]}"#.into());
        assert_eq!(
            serde_json::to_string(&unread).unwrap(),
            r#"{"plan":"pro","n":[1,2]}"#
        );
        assert_eq!(
            serde_json::to_value(&unread).unwrap(),
            json!({"plan": "pro", "n": [1, 2]})
        );
        assert!(!unread.is_parsed(), "passing it on is not reading it");

        let malformed = JsonObject::from_json(r#"{"plan":"#.into());
        assert_eq!(serde_json::to_string(&malformed).unwrap(), "{}");
        assert!(malformed.read_error().is_some(), "the glue will see it");
        let array = JsonObject::from_json("[1]".into());
        assert_eq!(serde_json::to_value(&array).unwrap(), json!({}));
        assert!(array.read_error().is_some());
    }

    #[test]
    fn clones_compare_equal_whether_parsed_or_not() {
        let unread = JsonObject::from_json(r#"{"a":[1,2]}"#.into());
        let clone = unread.clone();
        assert!(!clone.is_parsed());
        assert_eq!(clone, unread);
        assert_eq!(
            format!("{clone:?}"),
            format!("{:?}", json!({"a": [1, 2]}).as_object().unwrap())
        );
    }
}
