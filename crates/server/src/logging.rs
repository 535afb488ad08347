//! Text someone else chose (a client's user id, a backend's message) as
//! log lines show it: no control characters, bounded.

/// The longest user id put in a log line (characters).
const MAX_LOGGED_USER_CHARS: usize = 64;

/// A user id or agent name as logs show it: see [`log_safe_text`]; cut to
/// [`MAX_LOGGED_USER_CHARS`] characters. User ids come from clients (dev
/// auth) or tokens, agent names from clients.
pub(crate) fn log_safe(user: &str) -> String {
    log_safe_text(user, MAX_LOGGED_USER_CHARS)
}

/// A string someone else chose (a client, a backend) as logs show it:
/// control characters (a forged log line's newline, terminal escapes) as
/// `?`, cut to `max` characters with a `…`.
pub(crate) fn log_safe_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_logged_safely() {
        assert_eq!(log_safe("alice"), "alice");
        assert_eq!(log_safe("a\nb\r\u{1b}[31m"), "a?b??[31m");
        let long = "x".repeat(100);
        let logged = log_safe(&long);
        assert_eq!(logged.chars().count(), MAX_LOGGED_USER_CHARS + 1);
        assert!(logged.ends_with('…'));
        assert_eq!(
            log_safe(&"y".repeat(64)),
            "y".repeat(64),
            "at the limit: whole"
        );
    }
}
