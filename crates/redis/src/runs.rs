//! [`RedisRunLogs`]: AG-UI runs' event logs shared by every gateway on one
//! Redis, so a run started on one gateway is read, resumed and cancelled
//! from any.

use std::fmt;
use std::time::Duration;

use wsc_core::StoreError;

use wsc_core::{CancelAsked, RunAppended, RunClaim, RunRead, RunWakeup, RunWrite};

use crate::{RedisConnection, store_error};

/// KEYS: the run's hash. ARGV: owner, ttl ms. Creates the run held by
/// `owner` unless it exists; returns "" when created, else "=" and its
/// owner (empty once abandoned).
const CLAIM: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then return '=' .. owner end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'first', 1, 'last', 0, 'at', now, 'rd', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return ''
"#;

/// KEYS: the run's hash. ARGV: owner, first held, ended (0/1), ttl ms,
/// channel, wake-up, then (number, event) pairs in order. Returns
/// {cancel requested (0/1), ms since a remote reader last read}; -1 if
/// the run is not this owner's (ended, or ended by a reader); {-2, last} if
/// the first event does not follow the last held (writes the store lost in
/// a failover: the owner writes again from there).
const APPEND: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then
  -- Lost with its claim in a failover: the owner holds it again.
  local first = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'first', first, 'last', first - 1, 'at', now, 'rd', now)
  owner = ARGV[1]
end
if owner ~= ARGV[1] or redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return -1 end
local last = tonumber(redis.call('HGET', KEYS[1], 'last'))
if #ARGV > 6 and tonumber(ARGV[7]) > last + 1 and tonumber(ARGV[2]) <= last + 1 then
  return {-2, last}
end
for i = 7, #ARGV, 2 do
  local n = tonumber(ARGV[i])
  if n > last then
    redis.call('HSET', KEYS[1], 'e' .. n, ARGV[i + 1])
    last = n
  end
end
local first = tonumber(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[1], 'first'))
for n = old, math.min(first - 1, last) do
  redis.call('HDEL', KEYS[1], 'e' .. n)
end
if first > old then redis.call('HSET', KEYS[1], 'first', first) end
redis.call('HSET', KEYS[1], 'last', last, 'at', now)
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'ended', 1) end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
if #ARGV > 6 or ARGV[3] == '1' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
local cancel = redis.call('HEXISTS', KEYS[1], 'cancel')
local rd = tonumber(redis.call('HGET', KEYS[1], 'rd') or now)
return {cancel, now - rd}
"#;

/// KEYS: the run's hash. ARGV: after, at most how many, whether the read
/// counts as a reader's (0/1). Returns nil for no such run, else {first,
/// last, ended, ms since the owner last wrote, events after `after`...}.
const READ: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'first', 'last', 'ended', 'at')
if not h[1] then return nil end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'rd', now) end
local first, last = tonumber(h[1]), tonumber(h[2])
local out = {first, last, h[3] and 1 or 0, now - tonumber(h[4])}
local from = tonumber(ARGV[1]) + 1
if from < first then return out end
for n = from, math.min(last, from + tonumber(ARGV[2]) - 1) do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'e' .. n)
end
return out
"#;

/// KEYS: the run's hash. ARGV: channel, wake-up. Returns 0 for no such
/// run, 1 ended, 2 cancel requested.
const CANCEL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 1 end
redis.call('HSET', KEYS[1], 'cancel', 1)
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 2
"#;

/// KEYS: the run's hash. ARGV: lease ms, the ending event, ttl ms,
/// channel, wake-up. Ends a run whose owner has not written for the lease
/// with that event; returns 1 if it did.
const ABANDON: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'last', 'ended', 'at')
if not h[1] or h[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now - tonumber(h[3]) < tonumber(ARGV[1]) then return 0 end
local n = tonumber(h[1]) + 1
redis.call('HSET', KEYS[1], 'e' .. n, ARGV[2], 'last', n, 'ended', 1, 'owner', '')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"#;

/// KEYS: the run's hash. ARGV: owner. Deletes a run its owner claimed
/// but never started (nothing written); returns 1 if it did.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'last') == '0' then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// AG-UI runs' event logs in Redis, one hash per run (`{prefix}agui:…`),
/// so any gateway on the same Redis (or Redis Cluster: every call touches
/// one key) reads, resumes and cancels a run another gateway runs.
///
/// The gateway running a run (its owner) [`claim`](Self::claim)s it, then
/// [`append`](Self::append)s its events in order, numbered 1, 2, 3 … as it
/// holds them, trimming what outgrew the run's byte budget, and renews it
/// while it runs. Readers anywhere [`read`](Self::read) after any number;
/// each write publishes a wake-up on [`channel`](Self::channel) (a hint:
/// readers also poll). A reader may [`cancel`](Self::cancel) (the owner
/// learns it at its next write or renewal, or from the channel), and may
/// [`end_abandoned`](Self::end_abandoned) a run whose owner stopped
/// writing (its gateway died), so readers are never left waiting.
#[derive(Clone)]
pub struct RedisRunLogs {
    redis: RedisConnection,
    prefix: String,
    claim: redis::Script,
    append: redis::Script,
    read: redis::Script,
    cancel: redis::Script,
    abandon: redis::Script,
    release: redis::Script,
}

impl fmt::Debug for RedisRunLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRunLogs")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisRunLogs {
    /// Run logs on `redis` with keys under `prefix`.
    pub fn new(redis: RedisConnection, prefix: impl Into<String>) -> Self {
        RedisRunLogs {
            redis,
            prefix: prefix.into(),
            claim: redis::Script::new(CLAIM),
            append: redis::Script::new(APPEND),
            read: redis::Script::new(READ),
            cancel: redis::Script::new(CANCEL),
            abandon: redis::Script::new(ABANDON),
            release: redis::Script::new(RELEASE),
        }
    }

    /// The pub/sub channel of the wake-ups (see [`parse_wakeup`](Self::parse_wakeup)).
    pub fn channel(&self) -> String {
        format!("{}agui", self.prefix)
    }

    /// `user`'s run `run_id`, as the key and wake-ups name it: the user's
    /// length first, so no two pairs share a name.
    fn name(user: &str, run_id: &str) -> String {
        format!("{}:{user}:{run_id}", user.len())
    }

    /// The key of `user`'s run `run_id` (one hash: its state and events).
    pub fn key(&self, user: &str, run_id: &str) -> String {
        format!("{}agui:{}", self.prefix, Self::name(user, run_id))
    }

    fn wakeup(kind: RunWakeup, user: &str, run_id: &str) -> String {
        let tag = match kind {
            RunWakeup::Events => 'e',
            RunWakeup::Cancel => 'c',
        };
        format!("{tag}{}", Self::name(user, run_id))
    }

    /// What a message on [`channel`](Self::channel) says: which user's run
    /// and what happened. `None` for anything else.
    pub fn parse_wakeup(message: &str) -> Option<(RunWakeup, String, String)> {
        let kind = match message.as_bytes().first()? {
            b'e' => RunWakeup::Events,
            b'c' => RunWakeup::Cancel,
            _ => return None,
        };
        let (len, rest) = message[1..].split_once(':')?;
        let len: usize = len.parse().ok()?;
        let user = rest.get(..len)?;
        let run_id = rest.get(len..)?.strip_prefix(':')?;
        Some((kind, user.to_owned(), run_id.to_owned()))
    }

    /// Makes `user`'s run `run_id` `owner`'s unless it exists; the record
    /// lives `ttl` unless renewed.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn claim(
        &self,
        user: &str,
        run_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<RunClaim, StoreError> {
        let mut redis = self.redis.clone();
        let held: String = self
            .claim
            .key(self.key(user, run_id))
            .arg(owner)
            .arg(millis(ttl))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(match held.strip_prefix('=') {
            Some(owner) => RunClaim::Held(owner.to_owned()),
            None => RunClaim::New,
        })
    }

    /// Gives up `owner`'s claim of a run it could not start (nothing
    /// written yet): a retry may claim it again. Whether it did.
    ///
    /// # Errors
    /// Redis unreachable (the claim then expires with its ttl).
    pub async fn release(&self, user: &str, run_id: &str, owner: &str) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let released: i64 = self
            .release
            .key(self.key(user, run_id))
            .arg(owner)
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(released == 1)
    }

    /// The owner writes what `write` says: its events (each with its
    /// number, in order; numbers already written are skipped), that only
    /// the events from `write.first` on are held, and the end if
    /// `write.ended`. The record lives `write.ttl` from now (a write with
    /// no events renews it). Readers are woken.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn append(
        &self,
        user: &str,
        run_id: &str,
        owner: &str,
        write: &RunWrite<'_>,
    ) -> Result<RunAppended, StoreError> {
        let RunWrite {
            first,
            events,
            ended,
            ttl,
        } = *write;
        let mut invocation = self.append.prepare_invoke();
        invocation
            .key(self.key(user, run_id))
            .arg(owner)
            .arg(first)
            .arg(u8::from(ended))
            .arg(millis(ttl))
            .arg(self.channel())
            .arg(Self::wakeup(RunWakeup::Events, user, run_id));
        for (number, event) in events {
            invocation.arg(*number).arg(*event);
        }
        let mut redis = self.redis.clone();
        let answer: redis::Value = invocation
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        let int = |v: &redis::Value| match v {
            redis::Value::Int(i) => *i,
            _ => 0,
        };
        match answer {
            redis::Value::Array(values) if values.len() == 2 && int(&values[0]) == -2 => {
                Ok(RunAppended::Behind {
                    last: int(&values[1]).max(0) as u64,
                })
            }
            redis::Value::Array(values) if values.len() == 2 => Ok(RunAppended::Written {
                cancel: int(&values[0]) == 1,
                unread_for: Duration::from_millis(int(&values[1]).max(0) as u64),
            }),
            _ => Ok(RunAppended::Lost),
        }
    }

    /// Up to `max` events of the run after number `after`, with the run's
    /// state; `None` if there is no such run. `as_reader`: the read counts
    /// as a reader following the run (the owner does not cancel a run
    /// read somewhere as unread).
    ///
    /// # Errors
    /// Redis unreachable, or a record that is not a run's.
    pub async fn read(
        &self,
        user: &str,
        run_id: &str,
        after: u64,
        max: usize,
        as_reader: bool,
    ) -> Result<Option<RunRead>, StoreError> {
        let mut redis = self.redis.clone();
        let answer: Option<Vec<redis::Value>> = self
            .read
            .key(self.key(user, run_id))
            .arg(after)
            .arg(max.max(1))
            .arg(u8::from(as_reader))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        let Some(values) = answer else {
            return Ok(None);
        };
        let bad = || StoreError::new("redis: an AG-UI run's record is malformed");
        let int = |i: usize| match values.get(i) {
            Some(redis::Value::Int(n)) => Ok(*n),
            _ => Err(bad()),
        };
        let (first, last, ended, silent) = (int(0)?, int(1)?, int(2)?, int(3)?);
        let events = values[4..]
            .iter()
            .map(|v| match v {
                redis::Value::BulkString(bytes) => {
                    String::from_utf8(bytes.clone()).map_err(|_| bad())
                }
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RunRead {
            first: first.max(0) as u64,
            last: last.max(0) as u64,
            ended: ended == 1,
            owner_silent_for: Duration::from_millis(silent.max(0) as u64),
            events,
        }))
    }

    /// Asks the run's owner to cancel it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn cancel(&self, user: &str, run_id: &str) -> Result<CancelAsked, StoreError> {
        let mut redis = self.redis.clone();
        let answer: i64 = self
            .cancel
            .key(self.key(user, run_id))
            .arg(self.channel())
            .arg(Self::wakeup(RunWakeup::Cancel, user, run_id))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(match answer {
            0 => CancelAsked::NotFound,
            1 => CancelAsked::Ended,
            _ => CancelAsked::Asked,
        })
    }

    /// Ends a run whose owner has written nothing for `lease` (its gateway
    /// stopped) with `event` as its last, kept `ttl`; whether it did. Any
    /// number of readers may try: one ends it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn end_abandoned(
        &self,
        user: &str,
        run_id: &str,
        lease: Duration,
        event: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let ended: i64 = self
            .abandon
            .key(self.key(user, run_id))
            .arg(millis(lease))
            .arg(event)
            .arg(millis(ttl))
            .arg(self.channel())
            .arg(Self::wakeup(RunWakeup::Events, user, run_id))
            .invoke_async(&mut redis)
            .await
            .map_err(store_error)?;
        Ok(ended == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeups_name_the_user_and_run_unambiguously() {
        for (user, run) in [("a:b", "c"), ("a", "b:c"), ("ü", ""), ("u", "r:1:")] {
            for kind in [RunWakeup::Events, RunWakeup::Cancel] {
                let message = RedisRunLogs::wakeup(kind, user, run);
                assert_eq!(
                    RedisRunLogs::parse_wakeup(&message),
                    Some((kind, user.to_owned(), run.to_owned()))
                );
            }
        }
        assert_ne!(
            RedisRunLogs::name("a:b", "c"),
            RedisRunLogs::name("a", "b:c")
        );
        for junk in ["", "x1:a:b", "e", "e9:a:b", "ex:a", "e1:ab"] {
            assert_eq!(RedisRunLogs::parse_wakeup(junk), None, "{junk}");
        }
    }
}
