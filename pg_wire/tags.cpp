#include "tags.h"

namespace pgswitch::wire {

namespace fe {
std::string_view to_string(Tag t) noexcept
{
    switch (t) {
    case Tag::Bind:
        return "Bind";
    case Tag::Close:
        return "Close";
    case Tag::CopyData:
        return "CopyData";
    case Tag::CopyDone:
        return "CopyDone";
    case Tag::CopyFail:
        return "CopyFail";
    case Tag::Describe:
        return "Describe";
    case Tag::Execute:
        return "Execute";
    case Tag::Flush:
        return "Flush";
    case Tag::FunctionCall:
        return "FunctionCall";
    case Tag::Parse:
        return "Parse";
    case Tag::Password:
        return "PasswordMessage";
    case Tag::Query:
        return "Query";
    case Tag::Sync:
        return "Sync";
    case Tag::Terminate:
        return "Terminate";
    }
    return "unknown";
}

bool is_known(char c) noexcept
{
    return to_string(static_cast<Tag>(c)) != "unknown";
}
}  // namespace fe

namespace be {
std::string_view to_string(Tag t) noexcept
{
    switch (t) {
    case Tag::Authentication:
        return "Authentication";
    case Tag::BackendKeyData:
        return "BackendKeyData";
    case Tag::BindComplete:
        return "BindComplete";
    case Tag::CloseComplete:
        return "CloseComplete";
    case Tag::CommandComplete:
        return "CommandComplete";
    case Tag::CopyBothResponse:
        return "CopyBothResponse";
    case Tag::CopyData:
        return "CopyData";
    case Tag::CopyDone:
        return "CopyDone";
    case Tag::CopyInResponse:
        return "CopyInResponse";
    case Tag::CopyOutResponse:
        return "CopyOutResponse";
    case Tag::DataRow:
        return "DataRow";
    case Tag::EmptyQueryResponse:
        return "EmptyQueryResponse";
    case Tag::ErrorResponse:
        return "ErrorResponse";
    case Tag::FunctionCallResponse:
        return "FunctionCallResponse";
    case Tag::NegotiateProtocolVersion:
        return "NegotiateProtocolVersion";
    case Tag::NoData:
        return "NoData";
    case Tag::NoticeResponse:
        return "NoticeResponse";
    case Tag::NotificationResponse:
        return "NotificationResponse";
    case Tag::ParameterDescription:
        return "ParameterDescription";
    case Tag::ParameterStatus:
        return "ParameterStatus";
    case Tag::ParseComplete:
        return "ParseComplete";
    case Tag::PortalSuspended:
        return "PortalSuspended";
    case Tag::ReadyForQuery:
        return "ReadyForQuery";
    case Tag::RowDescription:
        return "RowDescription";
    }
    return "unknown";
}

bool is_known(char c) noexcept
{
    return to_string(static_cast<Tag>(c)) != "unknown";
}

bool may_be_long(char c) noexcept
{
    switch (static_cast<Tag>(c)) {
    case Tag::RowDescription:
    case Tag::DataRow:
    case Tag::CopyData:
    case Tag::FunctionCallResponse:
    case Tag::ErrorResponse:
    case Tag::NoticeResponse:
    case Tag::NotificationResponse:
    case Tag::ParameterDescription:
        return true;
    default:
        return false;
    }
}
}  // namespace be

}  // namespace pgswitch::wire
