//! Bulk requests: the pending documents as one request body, and its answer
//! read item by item (written, retried, or rejected for good).

use super::jaeger::JaegerDependencies;
use super::{EsError, EsSink};
use crate::analysis::{Anomaly, AnomalyKind, Resolution};
use crate::runtime::pipeline::DependencyBucket;
use crate::sink::documents::{document_id, index_name};
use elasticsearch::http::request::JsonBody;
use elasticsearch::BulkParts;
use serde_json::{json, Value};

impl EsSink {
    /// One bulk request for the pending documents; keeps those to retry.
    pub(super) fn bulk_once(&mut self) -> Result<(), EsError> {
        let docs = std::mem::take(&mut self.pending);
        let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(docs.len() * 2);
        for d in &docs {
            let (action, index, id) = self.target(d);
            body.push(json!({action: {"_index": index, "_id": id}}).into());
            match d {
                Doc::Anomaly(a) => body.push(serde_json::to_value(a).unwrap_or(Value::Null).into()),
                // A partial update: the loss document stays, marked resolved.
                Doc::Resolution(r) => body.push(json!({ "doc": r.update() }).into()),
                Doc::Dependencies(b) => body.push(JaegerDependencies::document(b).into()),
            }
        }
        let sent = self.rt.block_on(async {
            let r = self.client.bulk(BulkParts::None).body(body).send().await.map_err(EsError::request)?;
            let status = r.status_code().as_u16();
            if status >= 300 {
                let body = r.text().await.unwrap_or_default();
                return Err(EsError::Status { what: "a bulk request", status, body });
            }
            r.json::<Value>().await.map_err(|e| EsError::Client(e.to_string()))
        });
        let answer = match sent {
            Ok(v) => v,
            Err(e) => {
                self.pending = docs;
                return Err(e);
            }
        };
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        // Updates that found no document: retried when their loss is retried too.
        let mut missing = Vec::new();
        for (d, item) in docs.into_iter().zip(items.iter().chain(std::iter::repeat(&Value::Null))) {
            let action = self.target(&d).0;
            let status = item[action]["status"].as_u64().unwrap_or(0);
            match status {
                // 409 on create: the document is there already, as first written or resolved.
                200..=299 | 409 if status != 409 || action == "create" => {
                    self.indexed.inc();
                }
                429 | 500..=599 | 0 => self.pending.push(d),
                404 if action == "update" => missing.push((d, item[action]["error"].clone())),
                _ => self.reject(&d, action, &item[action]["error"]),
            }
        }
        for (d, error) in missing {
            // Its loss was in this bulk and is retried (a 429, say): the update follows it.
            let id = d.id();
            if self.pending.iter().any(|p| matches!(p, Doc::Anomaly(_)) && p.id() == id) {
                self.pending.push(d);
            } else {
                self.reject(&d, "update", &error);
            }
        }
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(EsError::Status {
                what: "some bulk items",
                status: 429,
                body: format!("{} to retry", self.pending.len()),
            })
        }
    }

    fn reject(&self, d: &Doc, action: &str, error: &Value) {
        self.rejected.inc();
        let (_, index, id) = self.target(d);
        tracing::warn!("elasticsearch rejected the {action} of document {id} in {index}: {error}");
    }

    /// The bulk action, index and id of a document.
    fn target(&self, d: &Doc) -> (&'static str, String, String) {
        match d {
            // A loss is written once and then only updated: reported again (read
            // again after a crash), it must not turn a resolved document back.
            Doc::Anomaly(a) => {
                let action = if a.kind == AnomalyKind::MessageLoss { "create" } else { "index" };
                (action, index_name(&self.prefix, a), document_id(a))
            }
            Doc::Resolution(r) => {
                let key = r.document_key();
                ("update", index_name(&self.prefix, &key), document_id(&key))
            }
            // Written once: a bucket counted again after a re-read is the same bucket.
            Doc::Dependencies(b) => match &self.jaeger {
                Some(j) => ("create", j.index(b), j.id(b)),
                None => ("create", String::new(), String::new()),
            },
        }
    }
}

/// One bulk item: a new anomaly document, a resolved loss's update, or one of
/// Jaeger's dependency documents.
pub(super) enum Doc {
    Anomaly(Box<Anomaly>),
    Resolution(Box<Resolution>),
    Dependencies(Box<DependencyBucket>),
}

impl Doc {
    /// The id of the anomaly document it writes or updates.
    fn id(&self) -> String {
        match self {
            Doc::Anomaly(a) => document_id(a),
            Doc::Resolution(r) => document_id(&r.document_key()),
            Doc::Dependencies(_) => String::new(),
        }
    }
}
