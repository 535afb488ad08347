//! The closed set of message types, their wire values and legacy names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Who may send a message type over the wire.
///
/// The gateway refuses a server-only type sent by a client with the
/// `not_allowed` error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Only clients send it (e.g. `start_agent`).
    ClientToServer,
    /// Only the server sends it (e.g. `agent_started`, `error`).
    ServerToClient,
    /// Either side may send it (e.g. `ping`).
    Both,
}

macro_rules! message_types {
    ($( $(#[$doc:meta])* $variant:ident => $wire:literal, $legacy:literal, $dir:ident; )+) => {
        /// Every message type of the legacy protocol.
        ///
        /// [`as_str`](Self::as_str) is the wire value (`"agent_started"`), used by
        /// `Display` and serde; [`legacy_name`](Self::legacy_name) is the name
        /// of the Python enum member (`"AGENT_STARTED"`). [`FromStr`] accepts
        /// wire values, legacy names and the legacy alias strings listed on
        /// [`MessageType::from_str`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum MessageType {
            $( $(#[$doc])* $variant, )+
        }

        impl MessageType {
            /// Every message type, in declaration order.
            pub const ALL: &'static [MessageType] = &[ $( MessageType::$variant, )+ ];

            /// The wire value, e.g. `"agent_started"`.
            pub fn as_str(&self) -> &'static str {
                match self { $( MessageType::$variant => $wire, )+ }
            }

            /// The legacy (Python enum member) name, e.g. `"AGENT_STARTED"`.
            pub fn legacy_name(&self) -> &'static str {
                match self { $( MessageType::$variant => $legacy, )+ }
            }

            /// Who may send this type over the wire.
            pub fn direction(&self) -> Direction {
                match self { $( MessageType::$variant => Direction::$dir, )+ }
            }

            pub(crate) fn from_wire(s: &str) -> Option<MessageType> {
                match s { $( $wire => Some(MessageType::$variant), )+ _ => None }
            }

            fn from_legacy_name(s: &str) -> Option<MessageType> {
                match s { $( $legacy => Some(MessageType::$variant), )+ _ => None }
            }
        }
    };
}

message_types! {
    /// A client announces itself (legacy handshake message).
    Connect => "connect", "CONNECT", ClientToServer;
    /// A client says goodbye.
    Disconnect => "disconnect", "DISCONNECT", ClientToServer;
    /// The first frame the server sends on every connection.
    ConnectionEstablished => "connection_established", "CONNECTION_ESTABLISHED", ServerToClient;
    /// An application-level heartbeat.
    Heartbeat => "heartbeat", "HEARTBEAT", Both;
    /// The answer to a heartbeat.
    HeartbeatAck => "heartbeat_ack", "HEARTBEAT_ACK", Both;
    /// An application-level ping; answered by `pong` with the same payload.
    Ping => "ping", "PING", Both;
    /// The answer to `ping`.
    Pong => "pong", "PONG", Both;
    /// A chat message from the user.
    UserMessage => "user_message", "USER_MESSAGE", ClientToServer;
    /// A chat message (legacy synonym of `user_message`).
    Chat => "chat", "CHAT", ClientToServer;
    /// A message from the system to the user.
    SystemMessage => "system_message", "SYSTEM_MESSAGE", ServerToClient;
    /// A legacy error notice.
    ErrorMessage => "error_message", "ERROR_MESSAGE", ServerToClient;
    /// The user is typing.
    UserTyping => "user_typing", "USER_TYPING", ClientToServer;
    /// The agent is typing.
    AgentTyping => "agent_typing", "AGENT_TYPING", ServerToClient;
    /// Typing started.
    TypingStarted => "typing_started", "TYPING_STARTED", Both;
    /// Typing stopped.
    TypingStopped => "typing_stopped", "TYPING_STOPPED", Both;
    /// A client asks the server to start an agent run.
    StartAgent => "start_agent", "START_AGENT", ClientToServer;
    /// A client asks the server to cancel one of its runs (`{run_id}`).
    StopAgent => "stop_agent", "STOP_AGENT", ClientToServer;
    /// Critical event: an agent run began.
    AgentStarted => "agent_started", "AGENT_STARTED", ServerToClient;
    /// Legacy synonym of `agent_started`.
    AgentStart => "agent_start", "AGENT_START", ServerToClient;
    /// Legacy synonym of `agent_completed`.
    AgentComplete => "agent_complete", "AGENT_COMPLETE", ServerToClient;
    /// Critical event: an agent run finished successfully.
    AgentCompleted => "agent_completed", "AGENT_COMPLETED", ServerToClient;
    /// Legacy synonym of `tool_executing`.
    ToolExecute => "tool_execute", "TOOL_EXECUTE", ServerToClient;
    /// Critical event: a tool call began.
    ToolExecuting => "tool_executing", "TOOL_EXECUTING", ServerToClient;
    /// Legacy synonym of `tool_completed`.
    ToolComplete => "tool_complete", "TOOL_COMPLETE", ServerToClient;
    /// Critical event: a tool call finished.
    ToolCompleted => "tool_completed", "TOOL_COMPLETED", ServerToClient;
    /// A request for an agent.
    AgentRequest => "agent_request", "AGENT_REQUEST", ClientToServer;
    /// A task handed to an agent.
    AgentTask => "agent_task", "AGENT_TASK", ClientToServer;
    /// The server accepted an agent task.
    AgentTaskAck => "agent_task_ack", "AGENT_TASK_ACK", ServerToClient;
    /// An agent's full response.
    AgentResponse => "agent_response", "AGENT_RESPONSE", ServerToClient;
    /// One streamed chunk of an agent's response.
    AgentResponseChunk => "agent_response_chunk", "AGENT_RESPONSE_CHUNK", ServerToClient;
    /// The end of a streamed agent response.
    AgentResponseComplete => "agent_response_complete", "AGENT_RESPONSE_COMPLETE", ServerToClient;
    /// A client asks for an agent's status.
    AgentStatusRequest => "agent_status_request", "AGENT_STATUS_REQUEST", ClientToServer;
    /// The server reports an agent's status.
    AgentStatusUpdate => "agent_status_update", "AGENT_STATUS_UPDATE", ServerToClient;
    /// An agent's progress report.
    AgentProgress => "agent_progress", "AGENT_PROGRESS", ServerToClient;
    /// Critical event: the agent is reasoning.
    AgentThinking => "agent_thinking", "AGENT_THINKING", ServerToClient;
    /// An agent run failed; it ends the run.
    AgentError => "agent_error", "AGENT_ERROR", ServerToClient;
    /// A conversation thread changed.
    ThreadUpdate => "thread_update", "THREAD_UPDATE", ServerToClient;
    /// A message within a thread.
    ThreadMessage => "thread_message", "THREAD_MESSAGE", Both;
    /// A message to every connection.
    Broadcast => "broadcast", "BROADCAST", ServerToClient;
    /// A test broadcast.
    BroadcastTest => "broadcast_test", "BROADCAST_TEST", Both;
    /// A message to one user.
    DirectMessage => "direct_message", "DIRECT_MESSAGE", Both;
    /// A message to a room.
    RoomMessage => "room_message", "ROOM_MESSAGE", Both;
    /// A JSON-RPC request.
    JsonrpcRequest => "jsonrpc_request", "JSONRPC_REQUEST", Both;
    /// A JSON-RPC response.
    JsonrpcResponse => "jsonrpc_response", "JSONRPC_RESPONSE", Both;
    /// A JSON-RPC notification.
    JsonrpcNotification => "jsonrpc_notification", "JSONRPC_NOTIFICATION", Both;
    /// A resilience test message.
    ResilienceTest => "resilience_test", "RESILIENCE_TEST", Both;
    /// A recovery test message.
    RecoveryTest => "recovery_test", "RECOVERY_TEST", Both;
    /// Connection quality metrics.
    QualityMetrics => "quality_metrics", "QUALITY_METRICS", ServerToClient;
    /// Several messages in one frame.
    Batch => "batch", "BATCH", Both;
    /// A connection status notice.
    Connection => "connection", "CONNECTION", ServerToClient;
    /// Someone is typing.
    Typing => "typing", "TYPING", Both;
    /// An error frame (`{code, message, ...}`); ends an agent run as failed.
    Error => "error", "ERROR", ServerToClient;
    /// An acknowledgement: `ack {message_id}` from the server, `ack {seq}` from a client.
    Ack => "ack", "ACK", Both;
}

/// Legacy alias strings accepted by [`MessageType::from_str`], beyond wire
/// values and legacy names.
const ALIASES: &[(&str, MessageType)] = &[
    ("user", MessageType::UserMessage),
    ("message", MessageType::UserMessage),
    ("user_input", MessageType::UserMessage),
    ("execute_agent", MessageType::StartAgent),
    ("run_agent", MessageType::StartAgent),
    ("agent_finished", MessageType::AgentCompleted),
    ("agent_update", MessageType::AgentStatusUpdate),
    ("tool_call", MessageType::ToolExecuting),
    ("tool_result", MessageType::ToolCompleted),
    ("system", MessageType::SystemMessage),
    ("heartbeat_response", MessageType::HeartbeatAck),
    ("typing_start", MessageType::TypingStarted),
    ("typing_stop", MessageType::TypingStopped),
];

impl MessageType {
    /// The five events every agent run must deliver, in their natural order.
    pub const CRITICAL_AGENT_EVENTS: [MessageType; 5] = [
        MessageType::AgentStarted,
        MessageType::AgentThinking,
        MessageType::ToolExecuting,
        MessageType::ToolCompleted,
        MessageType::AgentCompleted,
    ];

    /// Maps a legacy synonym to the event it stands for
    /// (`agent_start` → `agent_started`, `tool_execute` → `tool_executing`,
    /// `tool_complete` → `tool_completed`, `agent_complete` → `agent_completed`);
    /// every other type maps to itself.
    pub fn canonical(&self) -> MessageType {
        match self {
            MessageType::AgentStart => MessageType::AgentStarted,
            MessageType::ToolExecute => MessageType::ToolExecuting,
            MessageType::ToolComplete => MessageType::ToolCompleted,
            MessageType::AgentComplete => MessageType::AgentCompleted,
            other => *other,
        }
    }

    /// Whether this type (or the event it is a synonym of) is one of
    /// [`CRITICAL_AGENT_EVENTS`](Self::CRITICAL_AGENT_EVENTS).
    pub fn is_critical(&self) -> bool {
        Self::CRITICAL_AGENT_EVENTS.contains(&self.canonical())
    }

    /// Whether this type ends an agent run: `agent_completed` (or its
    /// legacy synonym `agent_complete`) or `agent_error`. A run has exactly
    /// one such frame, its last; the gateway sends nothing of the run after
    /// it.
    ///
    /// ```
    /// use wsc_core::MessageType;
    /// assert!(MessageType::AgentComplete.is_terminal());
    /// assert!(MessageType::AgentError.is_terminal());
    /// assert!(!MessageType::ToolCompleted.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.canonical(),
            MessageType::AgentCompleted | MessageType::AgentError
        )
    }

    /// Whether this type (or the event it is a synonym of) is an event of
    /// an agent's run: the lifecycle (`agent_started` … `agent_completed`,
    /// `agent_error`) and the agent's output (`agent_response`,
    /// `agent_response_chunk`, `agent_response_complete`, `agent_progress`,
    /// `agent_status_update`, `agent_typing`). Connection, control and
    /// client types are not.
    ///
    /// ```
    /// use wsc_core::MessageType;
    /// assert!(MessageType::ToolExecute.is_agent_event());
    /// assert!(MessageType::AgentResponseChunk.is_agent_event());
    /// assert!(!MessageType::ConnectionEstablished.is_agent_event());
    /// assert!(!MessageType::Pong.is_agent_event());
    /// ```
    pub fn is_agent_event(&self) -> bool {
        matches!(
            self.canonical(),
            MessageType::AgentStarted
                | MessageType::AgentThinking
                | MessageType::ToolExecuting
                | MessageType::ToolCompleted
                | MessageType::AgentCompleted
                | MessageType::AgentError
                | MessageType::AgentResponse
                | MessageType::AgentResponseChunk
                | MessageType::AgentResponseComplete
                | MessageType::AgentProgress
                | MessageType::AgentStatusUpdate
                | MessageType::AgentTyping
        )
    }

    /// Whether this type belongs to the connection itself rather than to
    /// the data it carries: the handshake (`connection_established`,
    /// `connection`, `connect`, `disconnect`), liveness (`ping`, `pong`,
    /// `heartbeat`, `heartbeat_ack`), `ack` and `error`. Only the server
    /// makes these for a connection: a backend cannot publish them.
    ///
    /// ```
    /// use wsc_core::MessageType;
    /// assert!(MessageType::Pong.is_control() && MessageType::Error.is_control());
    /// assert!(!MessageType::AgentProgress.is_control());
    /// ```
    pub fn is_control(&self) -> bool {
        matches!(
            self.canonical(),
            MessageType::ConnectionEstablished
                | MessageType::Connection
                | MessageType::Connect
                | MessageType::Disconnect
                | MessageType::Ping
                | MessageType::Pong
                | MessageType::Heartbeat
                | MessageType::HeartbeatAck
                | MessageType::Ack
                | MessageType::Error
        )
    }

    /// Whether a client may send this type (false for server-only types).
    pub fn client_may_send(&self) -> bool {
        self.direction() != Direction::ServerToClient
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`MessageType::from_str`]: the string names no message type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown message type {0:?}: expected a wire value such as \"agent_started\"")]
pub struct UnknownMessageType(pub String);

impl FromStr for MessageType {
    type Err = UnknownMessageType;

    /// Parses a wire value (`"agent_started"`), a legacy name
    /// (`"AGENT_STARTED"`), or one of the legacy aliases: `user`, `message`,
    /// `user_input` → `user_message`; `execute_agent`, `run_agent` →
    /// `start_agent`; `agent_finished` → `agent_completed`; `agent_update` →
    /// `agent_status_update`; `tool_call` → `tool_executing`; `tool_result` →
    /// `tool_completed`; `system` → `system_message`; `heartbeat_response` →
    /// `heartbeat_ack`; `typing_start`/`typing_stop` →
    /// `typing_started`/`typing_stopped`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageType::from_wire(s)
            .or_else(|| MessageType::from_legacy_name(s))
            .or_else(|| {
                ALIASES
                    .iter()
                    .find(|(alias, _)| *alias == s)
                    .map(|(_, t)| *t)
            })
            .ok_or_else(|| UnknownMessageType(s.to_owned()))
    }
}

impl Serialize for MessageType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_and_legacy_names_are_unique_and_round_trip() {
        let mut wires = std::collections::HashSet::new();
        for t in MessageType::ALL {
            assert!(wires.insert(t.as_str()), "duplicate wire value {t}");
            assert_eq!(t.as_str().parse::<MessageType>(), Ok(*t));
            assert_eq!(t.legacy_name().parse::<MessageType>(), Ok(*t));
            assert_eq!(t.legacy_name(), t.as_str().to_ascii_uppercase());
        }
        // The legacy package's 52, and stop_agent.
        assert_eq!(MessageType::ALL.len(), 53);
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!("user".parse(), Ok(MessageType::UserMessage));
        assert_eq!("execute_agent".parse(), Ok(MessageType::StartAgent));
        assert!("nope".parse::<MessageType>().is_err());
        // Aliases never shadow a real wire value.
        for (alias, _) in ALIASES {
            assert!(MessageType::from_wire(alias).is_none(), "{alias}");
        }
    }

    #[test]
    fn critical_events_and_synonyms() {
        assert!(MessageType::AgentStart.is_critical());
        assert!(MessageType::ToolComplete.is_critical());
        assert!(!MessageType::AgentError.is_critical());
        assert_eq!(
            MessageType::AgentComplete.canonical(),
            MessageType::AgentCompleted
        );
        assert!(!MessageType::AgentStarted.client_may_send());
        assert!(MessageType::StartAgent.client_may_send());
    }

    #[test]
    fn serde_is_the_wire_value() {
        let json = serde_json::to_string(&MessageType::ToolExecuting).unwrap();
        assert_eq!(json, "\"tool_executing\"");
        let back: MessageType = serde_json::from_str("\"TOOL_EXECUTING\"").unwrap();
        assert_eq!(back, MessageType::ToolExecuting);
    }
}
