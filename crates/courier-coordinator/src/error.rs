//! The coordinator crate's one error type; the server maps each variant to a Kafka error code.

use thiserror::Error;

/// Why a coordinator request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoordinatorError {
    /// The member id is not (or no longer) part of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The request's generation is not the group's current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// A new member must rejoin with the member id it was just given (KIP-394).
    #[error("member id required")]
    MemberIdRequired,
    /// Another member has joined with this group.instance.id (static membership).
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The member's protocol type or protocols are incompatible with the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// session.timeout.ms outside the broker's allowed range.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// An empty group id.
    #[error("invalid group id")]
    InvalidGroupId,
    /// No such group.
    #[error("group id not found")]
    GroupIdNotFound,
    /// DeleteGroups on a group that still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group already has the most members allowed.
    #[error("group is full")]
    GroupMaxSizeReached,
    /// OffsetDelete on a topic the group's members subscribe to.
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// A consumer-protocol heartbeat with an epoch other than the member's.
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// A commit from a consumer-protocol member with an outdated epoch.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// A consumer-protocol member asked for a server assignor the broker does not have.
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    /// A request missing something the protocol requires (a joining member's subscription).
    #[error("invalid request")]
    InvalidRequest,
    /// Commit metadata longer than allowed.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// A share-group acknowledgement of a record the member does not hold (not acquired, or
    /// acquired by another member, or outside the in-flight window); nothing was changed.
    #[error("invalid record state")]
    InvalidRecordState,
    /// A persisted share-group state record that does not decode (corrupt or from a newer
    /// broker); the field says what was wrong.
    #[error("corrupt share-group state record: {0}")]
    CorruptShareState(&'static str),
}
