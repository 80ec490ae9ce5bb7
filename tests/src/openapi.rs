//! The server's own OpenAPI document (`GET /openapi.json`) as a checker: which operations it
//! describes, and whether an answer the server gave is one the document allows (its status is
//! documented for that operation and its JSON body validates against that status's schema,
//! JSON Schema 2020-12 with the document's components).

use jsonschema::{Draft, Validator};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// A server's OpenAPI document.
pub struct OpenApi {
    pub document: Value,
    validators: Mutex<HashMap<(String, String, u16), Arc<Validator>>>,
}

impl OpenApi {
    /// Fetches the document of the server at `url`.
    pub async fn fetch(url: &str) -> OpenApi {
        let answer = reqwest::get(format!("{url}/openapi.json"))
            .await
            .expect("GET /openapi.json");
        assert_eq!(answer.status(), 200, "GET /openapi.json");
        let document: Value = answer.json().await.expect("the document is JSON");
        OpenApi {
            document,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// Every `(method, path template)` the document describes.
    pub fn operations(&self) -> BTreeSet<(Method, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .expect("an HTTP method");
                out.insert((method, path.clone()));
            }
        }
        out
    }

    /// The path template of the document that `path` (a concrete request path, without its
    /// query) matches: the one with most literal segments.
    pub fn template(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        self.document["paths"]
            .as_object()?
            .keys()
            .filter(|template| {
                let t: Vec<&str> = template.split('/').collect();
                t.len() == parts.len()
                    && t.iter()
                        .zip(&parts)
                        .all(|(t, p)| t.starts_with('{') || t == p)
            })
            .max_by_key(|template| template.split('/').filter(|s| !s.starts_with('{')).count())
            .cloned()
    }

    /// Whether the answer `status` with `body` to `method path` is what the document allows.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let template = self
            .template(path)
            .ok_or_else(|| format!("{method} {path}: no such path in the document"))?;
        let key = (
            method.as_str().to_ascii_lowercase(),
            template.clone(),
            status,
        );
        let validator = {
            let mut validators = self.validators.lock().unwrap();
            match validators.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let operation = &self.document["paths"][&template][&key.0];
                    if operation.is_null() {
                        return Err(format!("{method} {template}: no such operation"));
                    }
                    let response = &operation["responses"][status.to_string()];
                    if response.is_null() {
                        return Err(format!(
                            "{method} {template}: status {status} is not documented"
                        ));
                    }
                    let Some(schema) = response["content"]["application/json"]["schema"]
                        .as_object()
                        .cloned()
                    else {
                        // A body that is not JSON (metrics) or none (204): nothing to validate.
                        return Ok(());
                    };
                    // The schema, with the document's components beside it so its references
                    // resolve.
                    let mut root = json!({ "components": self.document["components"] });
                    for (k, v) in schema {
                        root[k] = v;
                    }
                    let validator = jsonschema::options()
                        .with_draft(Draft::Draft202012)
                        .build(&root)
                        .map_err(|e| format!("{method} {template} {status}: bad schema: {e}"))?;
                    let validator = Arc::new(validator);
                    validators.insert(key, validator.clone());
                    validator
                }
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} answered {status} with a body its schema refuses: {}\nbody: {body}",
                errors.join("; ")
            ))
        }
    }
}
