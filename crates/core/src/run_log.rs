//! What a store shared by gateways answers about AG-UI runs' event logs
//! (one gateway runs a run, any reads it): the vocabulary of
//! `wsc_redis::RedisRunLogs` and of the gateway that uses it, so neither
//! names the other's types.

use std::time::Duration;

/// One write of a run's owner (a store's append).
#[derive(Clone, Copy, Debug)]
pub struct RunWrite<'a> {
    /// The oldest event the owner holds: the store drops those before it.
    pub first: u64,
    /// Events with their numbers, in order.
    pub events: &'a [(u64, &'a str)],
    /// The last of them ends the run.
    pub ended: bool,
    /// How long the record lives from now unless written again.
    pub ttl: Duration,
}

/// What a store's append learned about the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunAppended {
    /// Written. `cancel`: a reader on some gateway asked to cancel it;
    /// `unread_for`: how long since a reader on another gateway last read.
    Written {
        /// A cancel was asked for.
        cancel: bool,
        /// Since a remote reader last read it (since the claim if never).
        unread_for: Duration,
    },
    /// The run is no longer this owner's (it has ended, or readers ended
    /// it when the owner stopped writing): nothing was written. (A run
    /// whose record the store lost is written again from the owner's
    /// oldest event: [`RunAppended::Behind`].)
    Lost,
    /// The store holds the run only through event `last` (it lost writes
    /// in a failover): nothing was written; write again after `last`.
    Behind {
        /// The last event the store holds.
        last: u64,
    },
}

/// A read of a run's log in a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRead {
    /// The oldest event still held (events before it outgrew the run's
    /// byte budget).
    pub first: u64,
    /// The number of the run's last event so far.
    pub last: u64,
    /// Whether the run has ended with its last event.
    pub ended: bool,
    /// Since the run's owner last wrote (appended or renewed).
    pub owner_silent_for: Duration,
    /// The events after the position read from, numbered from it + 1
    /// (empty when they are no longer all held: `after + 1 < first`).
    pub events: Vec<String>,
}

/// What a store's cancel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelAsked {
    /// No such run (never, or expired).
    NotFound,
    /// The run has ended already.
    Ended,
    /// The owner is told (at once through the channel, or at its next
    /// write or renewal).
    Asked,
}

/// What a store's claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunClaim {
    /// The run was not held: it is now this owner's to run.
    New,
    /// The run exists (held by the owner named, empty once abandoned):
    /// read it, do not start it again.
    Held(String),
}

/// What a wake-up says happened to a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunWakeup {
    /// Events were appended, or it ended.
    Events,
    /// A reader asked to cancel it.
    Cancel,
}
