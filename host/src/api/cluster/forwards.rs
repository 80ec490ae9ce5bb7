//! Forwards between partitions (issue 16, `store/forwards.rs`) sent through this node's front:
//! to the node running the target partition (this one, or another), with the admin token, as
//! `POST /v1/admin/cluster/forwards`, waiting while no node runs it, as any request does.

use super::{spread, to_partition, ClusterState, Held};
use axum::http::{header, Method, Request, StatusCode};
use waymark_api::cluster::{Forwards, ForwardsTaken};

/// The route a partition takes forwards at.
const ROUTE: &str = "/v1/admin/cluster/forwards";

impl ClusterState {
    /// Sends `forwards` to `partition`; answers the highest number it has taken from their
    /// source, or why it did not answer so.
    pub async fn send_forwards(&self, partition: u16, forwards: &Forwards) -> Result<u64, String> {
        let body = serde_json::to_vec(forwards).map_err(|e| e.to_string())?;
        let (parts, ()) = Request::builder()
            .method(Method::POST)
            .uri(ROUTE)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.admin_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(())
            .map_err(|e| e.to_string())?
            .into_parts();
        let held = Held {
            parts,
            body: body.into(),
        };
        let response = to_partition(self, partition, held).await;
        let (status, body) = spread::read(response)
            .await
            .map_err(|_| format!("partition {partition}'s answer could not be read"))?;
        if status != StatusCode::OK {
            return Err(format!(
                "partition {partition} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        serde_json::from_slice::<ForwardsTaken>(&body)
            .map(|taken| taken.taken_through)
            .map_err(|e| format!("partition {partition}'s answer: {e}"))
    }
}
