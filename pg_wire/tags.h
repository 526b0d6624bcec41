// Message type bytes of protocol 3.0, named by sender (Protocol → Message Formats).
// The only place in the project where a bare 'D' or 'Q' may appear.
#pragma once

#include <cstdint>
#include <string_view>

namespace pgswitch::wire {

/// Frontend (client → server) message types.
namespace fe {
enum class Tag : char {
    Bind = 'B',
    Close = 'C',
    CopyData = 'd',
    CopyDone = 'c',
    CopyFail = 'f',
    Describe = 'D',
    Execute = 'E',
    Flush = 'H',
    FunctionCall = 'F',
    Parse = 'P',
    /// PasswordMessage, SASLInitialResponse and SASLResponse share 'p'; which
    /// one it is depends on the authentication request it answers.
    Password = 'p',
    Query = 'Q',
    Sync = 'S',
    Terminate = 'X',
};
std::string_view to_string(Tag t) noexcept;
/// True for every byte that is a valid frontend message type after startup.
bool is_known(char c) noexcept;
}  // namespace fe

/// Backend (server → client) message types.
namespace be {
enum class Tag : char {
    Authentication = 'R',
    BackendKeyData = 'K',
    BindComplete = '2',
    CloseComplete = '3',
    CommandComplete = 'C',
    CopyBothResponse = 'W',
    CopyData = 'd',
    CopyDone = 'c',
    CopyInResponse = 'G',
    CopyOutResponse = 'H',
    DataRow = 'D',
    EmptyQueryResponse = 'I',
    ErrorResponse = 'E',
    FunctionCallResponse = 'V',
    NegotiateProtocolVersion = 'v',
    NoData = 'n',
    NoticeResponse = 'N',
    NotificationResponse = 'A',
    ParameterDescription = 't',
    ParameterStatus = 'S',
    ParseComplete = '1',
    PortalSuspended = 's',
    ReadyForQuery = 'Z',
    RowDescription = 'T',
};
std::string_view to_string(Tag t) noexcept;
bool is_known(char c) noexcept;
/// Types a server may legitimately send longer than 30,000 bytes (libpq's
/// VALID_LONG_MESSAGE_TYPE, plus ParameterDescription for wide statements).
bool may_be_long(char c) noexcept;
}  // namespace be

/// Messages carried in CopyData once START_REPLICATION has begun (Protocol →
/// Streaming Replication Protocol). They nest inside 'd', so they may reuse bytes.
namespace repl {
enum class Tag : char {
    XLogData = 'w',             ///< server: WAL (for logical slots, one plugin message)
    PrimaryKeepalive = 'k',     ///< server: position report, maybe asking for a reply
    StandbyStatusUpdate = 'r',  ///< client: written / flushed / applied positions
    HotStandbyFeedback = 'h',   ///< client: physical replication only, unused here
};
}  // namespace repl

/// The pgoutput plugin's messages, protocol version 1, each the payload of one
/// XLogData (Protocol → Logical Replication Message Formats).
namespace pgoutput {
enum class Tag : char {
    Begin = 'B',
    Commit = 'C',
    Origin = 'O',
    Relation = 'R',
    Type = 'Y',
    Insert = 'I',
    Update = 'U',
    Delete = 'D',
    Truncate = 'T',
    Message = 'M',  ///< pg_logical_emit_message(), only with the messages option
};
/// What precedes a TupleData inside Insert / Update / Delete.
enum class TupleMarker : char {
    new_tuple = 'N',
    key = 'K',  ///< old tuple reduced to the replica identity key
    old = 'O',  ///< whole old tuple (REPLICA IDENTITY FULL)
};
/// Per-column kind inside a TupleData.
enum class ColumnKind : char {
    null = 'n',
    unchanged_toast = 'u',  ///< value not sent: unchanged TOASTed column
    text = 't',
    binary = 'b',  ///< only with the binary option (PostgreSQL 14+)
};
}  // namespace pgoutput

/// The type byte of a message tag (fe::Tag or be::Tag), for writers.
template <class TagEnum>
constexpr char tag_of(TagEnum t) noexcept
{
    return static_cast<char>(t);
}

/// Startup-phase request codes (the Int32 after the length of an untagged packet).
namespace startup_code {
inline constexpr std::int32_t protocol_3_0 = 196608;      // 3 << 16
inline constexpr std::int32_t cancel_request = 80877102;  // 1234 << 16 | 5678
inline constexpr std::int32_t ssl_request = 80877103;     // 1234 << 16 | 5679
inline constexpr std::int32_t gssenc_request = 80877104;  // 1234 << 16 | 5680
}  // namespace startup_code

/// Authentication request codes carried by be::Tag::Authentication.
enum class AuthCode : std::int32_t {
    ok = 0,
    kerberos_v5 = 2,
    cleartext_password = 3,
    md5_password = 5,
    gss = 7,
    gss_continue = 8,
    sspi = 9,
    sasl = 10,
    sasl_continue = 11,
    sasl_final = 12,
};

/// Transaction status byte of ReadyForQuery.
enum class TxStatus : char {
    idle = 'I',            ///< not in a transaction block
    in_transaction = 'T',  ///< in a transaction block
    failed = 'E',          ///< in a failed transaction block (queries rejected until ROLLBACK)
};

}  // namespace pgswitch::wire
