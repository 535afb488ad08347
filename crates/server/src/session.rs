//! Where a connection's session lives: started or resumed on the registry
//! that holds it (the shared store's, or this gateway's memory for a
//! session started while the store was unreachable), and the connection's
//! place in its user's count across gateways.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wsc_reconnection::{ResumeRequest, SessionError, SessionRegistry, SessionStart};

use crate::state::{AppState, SessionHome};

/// Starts or resumes the session on the registry that holds it: this
/// node's memory for sessions started while Redis was unreachable, else the
/// gateway's (Redis or memory). With Redis unreachable and fail-open, a new
/// session starts in memory (a resume waits: the handshake is refused
/// before, and a failure here closes with 1013 so the client retries).
pub(crate) async fn start_session(
    state: &Arc<AppState>,
    user: &str,
    resume: Option<&ResumeRequest>,
) -> (Arc<SessionRegistry>, Result<SessionStart, SessionError>) {
    // Only ids with this node's local mark can be in its memory registry
    // (with Redis; without, the two registries are one).
    if let (Some(_), Some(request)) = (&state.shared, resume) {
        let here = state.session_home(&request.session_id) == SessionHome::Here;
        if here
            && matches!(
                state.local_sessions.session(&request.session_id).await,
                Ok(Some(_))
            )
        {
            let local = state.local_sessions.clone();
            let started = local.start(user, resume).await;
            return (local, started);
        }
    }
    let started = state.sessions.start(user, resume).await;
    match (&state.shared, started) {
        (Some(shared), Err(SessionError::Store(e))) => {
            state.shared_store_failed();
            if resume.is_none() && !shared.fail_closed() {
                tracing::warn!(error = %e, "session store unreachable: starting a session in this node's memory");
                state
                    .counters
                    .local_sessions
                    .fetch_add(1, Ordering::Relaxed);
                let local = state.local_sessions.clone();
                let started = local.start(user, None).await;
                return (local, started);
            }
            (state.sessions.clone(), Err(SessionError::Store(e)))
        }
        (_, started) => (state.sessions.clone(), started),
    }
}

/// The connection's place in the user's count across gateways (the
/// broker's); released when dropped.
pub(crate) struct SharedSlot {
    state: Arc<AppState>,
    user: String,
    member: Option<String>,
}

impl SharedSlot {
    pub(crate) fn hold(state: &Arc<AppState>, user: &str, connection_id: &str) -> Self {
        let member = state.shared.as_ref().map(|shared| {
            shared.hold(user, connection_id);
            connection_id.to_owned()
        });
        SharedSlot {
            state: state.clone(),
            user: user.to_owned(),
            member,
        }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        if let (Some(shared), Some(member)) = (&self.state.shared, self.member.take()) {
            shared.close(std::mem::take(&mut self.user), member);
        }
    }
}
