//! The resume triple in a handshake's query string: parsed strictly, so a
//! malformed resume is refused with a reason instead of silently becoming
//! a resume from seq 0 (which would deliver duplicates).

use std::fmt;

use crate::registry::ResumeRequest;

/// The longest `session_id` accepted (ids made here are 32 hex digits).
pub const MAX_SESSION_ID_BYTES: usize = 128;
/// The longest `resume_token` accepted (tokens made here are under 90 bytes).
pub const MAX_RESUME_TOKEN_BYTES: usize = 512;

/// Why a handshake's resume parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeQueryError {
    /// One of `session_id`, `resume_token`, `last_seq` appears more than
    /// once (which one counts would be ambiguous).
    #[error("`{0}` appears more than once")]
    Repeated(&'static str),
    /// `resume_token` or `last_seq` without a `session_id`.
    #[error("`{0}` given without `session_id`")]
    WithoutSession(&'static str),
    /// `session_id` given without `resume_token`.
    #[error("`session_id` given without `resume_token`")]
    MissingToken,
    /// A value is empty or longer than its limit.
    #[error("`{field}` must be 1 to {max} bytes, got {len}")]
    BadLength {
        /// The parameter.
        field: &'static str,
        /// Its decoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `last_seq` is not a decimal number that fits in a `u64`.
    #[error("`last_seq` must be a decimal number from 0 to {max}, got {value:?}", max = u64::MAX)]
    InvalidLastSeq {
        /// The value as sent (cut to 64 characters).
        value: String,
    },
}

impl ResumeRequest {
    /// Reads the resume triple (`session_id`, `resume_token`, `last_seq`)
    /// from a URL query string (without the `?`), form-urlencoded as
    /// [`ResilientClient`](crate::ResilientClient) sends it. Other
    /// parameters are ignored.
    ///
    /// `Ok(None)` when the query asks for no resume (no `session_id` and no
    /// other resume parameter); a missing `last_seq` means 0 (nothing was
    /// received yet).
    ///
    /// # Errors
    /// A [`ResumeQueryError`] for a repeated parameter, a token or seq
    /// without a session, a session without a token, an empty or
    /// over-long value, or a `last_seq` that is not a `u64`.
    ///
    /// ```
    /// use wsc_reconnection::{ResumeQueryError, ResumeRequest};
    ///
    /// let r = ResumeRequest::from_query("user_id=a&session_id=s1&resume_token=1.ab&last_seq=7")
    ///     .unwrap()
    ///     .unwrap();
    /// assert_eq!((r.session_id.as_str(), r.last_seq), ("s1", 7));
    /// assert_eq!(ResumeRequest::from_query("user_id=a"), Ok(None));
    /// assert!(matches!(
    ///     ResumeRequest::from_query("session_id=s1&resume_token=t&last_seq=-1"),
    ///     Err(ResumeQueryError::InvalidLastSeq { .. })
    /// ));
    /// ```
    pub fn from_query(query: &str) -> Result<Option<ResumeRequest>, ResumeQueryError> {
        let mut session_id: Option<String> = None;
        let mut token: Option<String> = None;
        let mut last_seq: Option<String> = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let (name, slot) = match key.as_ref() {
                "session_id" => ("session_id", &mut session_id),
                "resume_token" => ("resume_token", &mut token),
                "last_seq" => ("last_seq", &mut last_seq),
                _ => continue,
            };
            if slot.is_some() {
                return Err(ResumeQueryError::Repeated(name));
            }
            *slot = Some(value.into_owned());
        }
        let Some(session_id) = session_id else {
            return match (token, last_seq) {
                (Some(_), _) => Err(ResumeQueryError::WithoutSession("resume_token")),
                (None, Some(_)) => Err(ResumeQueryError::WithoutSession("last_seq")),
                (None, None) => Ok(None),
            };
        };
        check_length("session_id", &session_id, MAX_SESSION_ID_BYTES)?;
        let resume_token = token.ok_or(ResumeQueryError::MissingToken)?;
        check_length("resume_token", &resume_token, MAX_RESUME_TOKEN_BYTES)?;
        let last_seq = match last_seq {
            None => 0,
            Some(v) => parse_seq(&v).ok_or_else(|| ResumeQueryError::InvalidLastSeq {
                value: v.chars().take(64).collect(),
            })?,
        };
        Ok(Some(ResumeRequest {
            session_id,
            resume_token,
            last_seq,
        }))
    }

    /// The triple as query parameters, form-urlencoded, joined by `&`
    /// (what [`from_query`](Self::from_query) reads back).
    ///
    /// ```
    /// use wsc_reconnection::ResumeRequest;
    /// let r = ResumeRequest { session_id: "s 1".into(), resume_token: "1.ab".into(), last_seq: 3 };
    /// assert_eq!(r.to_query(), "session_id=s+1&resume_token=1.ab&last_seq=3");
    /// assert_eq!(ResumeRequest::from_query(&r.to_query()), Ok(Some(r)));
    /// ```
    pub fn to_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("session_id", &self.session_id)
            .append_pair("resume_token", &self.resume_token)
            .append_pair("last_seq", &self.last_seq.to_string())
            .finish()
    }
}

fn check_length(field: &'static str, value: &str, max: usize) -> Result<(), ResumeQueryError> {
    if value.is_empty() || value.len() > max {
        return Err(ResumeQueryError::BadLength {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Plain ASCII digits only (no sign, no spaces; leading zeros allowed), at
/// most `u64::MAX`.
fn parse_seq(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

impl fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeRequest")
            .field("session_id", &self.session_id)
            .field(
                "resume_token",
                &format_args!("<{} bytes>", self.resume_token.len()),
            )
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

impl fmt::Display for ResumeRequest {
    /// The session and seq, never the token (tokens are not logged).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {} after seq {}", self.session_id, self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str, t: &str, n: u64) -> ResumeRequest {
        ResumeRequest {
            session_id: s.into(),
            resume_token: t.into(),
            last_seq: n,
        }
    }

    #[test]
    fn reads_the_triple_and_ignores_the_rest() {
        assert_eq!(
            ResumeRequest::from_query("user_id=u&session_id=a%20b&resume_token=1.x&last_seq=0"),
            Ok(Some(req("a b", "1.x", 0)))
        );
        assert_eq!(
            ResumeRequest::from_query("session_id=s&resume_token=t"),
            Ok(Some(req("s", "t", 0)))
        );
        assert_eq!(
            ResumeRequest::from_query(&format!(
                "session_id=s&resume_token=t&last_seq={}",
                u64::MAX
            )),
            Ok(Some(req("s", "t", u64::MAX)))
        );
        assert_eq!(ResumeRequest::from_query(""), Ok(None));
        assert_eq!(ResumeRequest::from_query("&&=&user_id"), Ok(None));
    }

    #[test]
    fn refuses_what_is_ambiguous_or_malformed() {
        use ResumeQueryError as E;
        let cases: &[(&str, E)] = &[
            (
                "session_id=a&session_id=b&resume_token=t",
                E::Repeated("session_id"),
            ),
            (
                "session_id=a&resume_token=t&last_seq=1&last_seq=2",
                E::Repeated("last_seq"),
            ),
            ("resume_token=t", E::WithoutSession("resume_token")),
            ("last_seq=3", E::WithoutSession("last_seq")),
            ("session_id=a", E::MissingToken),
            (
                "session_id=&resume_token=t",
                E::BadLength {
                    field: "session_id",
                    len: 0,
                    max: MAX_SESSION_ID_BYTES,
                },
            ),
            (
                "session_id=a&resume_token=",
                E::BadLength {
                    field: "resume_token",
                    len: 0,
                    max: MAX_RESUME_TOKEN_BYTES,
                },
            ),
        ];
        for (q, e) in cases {
            assert_eq!(ResumeRequest::from_query(q).as_ref(), Err(e), "{q}");
        }
        for seq in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "0x10",
            "1e3",
            "18446744073709551616",
            "abc",
        ] {
            let q = format!("session_id=a&resume_token=t&last_seq={seq}");
            assert!(
                matches!(ResumeRequest::from_query(&q), Err(E::InvalidLastSeq { .. })),
                "{seq:?}"
            );
        }
        let long = "x".repeat(MAX_SESSION_ID_BYTES + 1);
        assert!(matches!(
            ResumeRequest::from_query(&format!("session_id={long}&resume_token=t")),
            Err(E::BadLength {
                field: "session_id",
                ..
            })
        ));
    }

    #[test]
    fn display_and_debug_leave_the_token_out() {
        let r = req("s1", "1.secret", 4);
        assert_eq!(r.to_string(), "session s1 after seq 4");
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("secret") && debug.contains("<8 bytes>"),
            "{debug}"
        );
    }
}
