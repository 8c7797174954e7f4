//! A reported message loss that a consumer resolved after all.

use super::{Anomaly, AnomalyKind, Details, Evidence, LossStatus, Truncated};
use serde::{Deserialize, Serialize};

/// A span that consumed a message, named in a resolved loss.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ConsumerRef {
    pub trace_id: String,
    pub span_id: String,
    pub service: String,
    pub operation: String,
}

/// A reported message loss that a consumer resolved after all: the update to
/// its document (same kind, trace and span, so the same `_id`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Resolution {
    /// The producer span the loss is about.
    pub trace_id: String,
    pub span_id: String,
    /// The loss document's `@timestamp` (which names its daily index).
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub resolved_at: String,
    pub consumer: ConsumerRef,
}

impl Resolution {
    /// The document this resolves, as it was reported.
    pub fn resolves(&self, a: &Anomaly) -> bool {
        a.kind == AnomalyKind::MessageLoss && a.trace_id == self.trace_id && a.span_id == self.span_id
    }

    /// Marks `a` resolved.
    pub fn apply(&self, a: &mut Anomaly) {
        a.details.status = Some(LossStatus::Resolved);
        a.details.resolved_at = Some(self.resolved_at.clone());
        a.details.consumer = Some(self.consumer.clone());
    }

    /// The fields a resolution changes in the document, for a partial update.
    pub fn update(&self) -> serde_json::Value {
        serde_json::json!({
            "status": LossStatus::Resolved,
            "resolved_at": self.resolved_at,
            "consumer": self.consumer,
        })
    }

    /// The anomaly it resolves, enough to name its document (id and index).
    pub fn document_key(&self) -> Anomaly {
        Anomaly {
            kind: AnomalyKind::MessageLoss,
            trace_id: self.trace_id.clone(),
            span_id: self.span_id.clone(),
            service: String::new(),
            operation: String::new(),
            timestamp: self.timestamp.clone(),
            detected_at: String::new(),
            summary: String::new(),
            details: Details::default(),
            evidence: Evidence::default(),
            truncated: Truncated::default(),
        }
    }
}
