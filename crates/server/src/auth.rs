//! Who a request is: the user a WebSocket handshake or an AG-UI request
//! names, by the gateway's auth mode (dev: a `user_id`; JWT: a `token`).

use std::collections::HashMap;

use crate::config::AuthMode;
use crate::state::AppState;

/// Why a handshake has no user.
pub(crate) enum AuthError {
    /// No or bad credentials: 401.
    Unauthorized(String),
    /// A `user_id` that is not a valid user id (too long, control
    /// characters): 400.
    InvalidUserId(String),
}

/// The authenticated user, or why not.
pub(crate) fn authenticate(
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<String, AuthError> {
    match &state.config.auth {
        AuthMode::Dev => {
            let user = query
                .get("user_id")
                .ok_or_else(|| {
                    AuthError::Unauthorized("missing user_id (auth mode dev)".to_owned())
                })?
                .trim();
            crate::config::check_user_id(user)
                .map_err(|e| AuthError::InvalidUserId(format!("user_id {e}")))?;
            Ok(user.to_owned())
        }
        AuthMode::Jwt(jwt) => {
            let token = query.get("token").ok_or_else(|| {
                AuthError::Unauthorized("missing token (auth mode jwt)".to_owned())
            })?;
            jwt.verify(token).map_err(AuthError::Unauthorized)
        }
    }
}
