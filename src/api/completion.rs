//! Requests that change something run to completion even if their client goes away.
//!
//! A handler's future is dropped when its client hangs up (our HTTP/1 driver watches the
//! socket so that a long-poll ends), when an HTTP/2 stream is reset, or when a peer server's
//! connection closes (its restart). Dropped at an `await` between a commit and the in-memory
//! work after it, a write would be stored but not applied: an event in the database that no
//! `/sync` delivers and no other server receives, while a retry with the same transaction id
//! answers that it was sent. Dropped while it begins a transaction, it could leave the
//! connection inside one (`src/store/mod.rs`, `out_of_transaction`).
//!
//! So, as Synapse does by default (only some of its reads are cancellable), every request
//! whose method may change something (not `GET`, `HEAD` or `OPTIONS`) runs in a task of its
//! own and the connection waits for that task: a client that hangs up loses the answer,
//! never half of the work. Reads stay cancellable: a long-poll whose client is gone ends at
//! once. A read that writes on the side guards its own write (a `/sync`'s `set_presence`
//! report: `presence::engine`'s `spawn_to_completion`).
//!
//! A handler that panics in its task is answered `500 M_UNKNOWN` instead of dropping the
//! connection.
use std::future::Future;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use tracing::Instrument;

use crate::error::MatrixError;

/// Whether a request with this method runs to completion (see the module documentation).
pub fn runs_to_completion(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Start `handler` in a task of its own, now, and return the wait for its answer: dropping
/// the wait does not drop the handler. The wait holds only the task's handle (a parked
/// connection holds this future).
pub fn to_completion<T>(
    handler: impl Future<Output = Response> + Send + 'static,
) -> impl Future<Output = Result<Response, T>> {
    // In the request's span, so what the handler logs is still the request's.
    let task = tokio::spawn(handler.in_current_span());
    async move {
        Ok(match task.await {
            Ok(resp) => resp,
            Err(e) => MatrixError::Internal(anyhow::anyhow!("the request's handler failed: {e}")).into_response(),
        })
    }
}

/// The same as a middleware, for the federation listener's router (the client listener does
/// it in `serve::edge`, without a middleware's boxed future on every request).
pub async fn middleware(req: Request, next: Next) -> Response {
    if runs_to_completion(req.method()) {
        let Ok::<_, std::convert::Infallible>(resp) = to_completion(next.run(req)).await;
        resp
    } else {
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_may_be_cancelled() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!runs_to_completion(&m), "{m}");
        }
        for m in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            assert!(runs_to_completion(&m), "{m}");
        }
    }

    #[tokio::test]
    async fn dropping_the_wait_does_not_drop_the_work() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let wait = to_completion::<()>(async move {
            let _ = go_rx.await;
            let _ = tx.send("finished");
            http::StatusCode::OK.into_response()
        });
        // Started, then dropped half-way, as a connection drops a request whose client left.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), wait).await;
        go_tx.send(()).unwrap();
        assert_eq!(rx.await.unwrap(), "finished");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500() {
        let resp = to_completion::<()>(async { panic!("boom") }).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
