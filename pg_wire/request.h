// One client request, typed: the frontend messages up to a request boundary
// (Query, Sync, Flush, FunctionCall), each parsed once, so that routing,
// catch-up, bookkeeping and retries read views instead of bytes.
// Pure: no I/O. Depends on frontend.h only.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "frame.h"
#include "frontend.h"
#include "tags.h"

namespace pgswitch::wire {

/// One message of a Request. `view` is the parsed message for the kinds the
/// proxy reads (monostate for Sync and Flush, and for a message whose body
/// did not parse: then `malformed` is set and the server gets to refuse it).
struct RequestMessage {
    using View = std::variant<std::monostate, fe::Query, fe::Parse, fe::Bind, fe::Describe, fe::Execute, fe::Close,
                              fe::FunctionCall>;
    fe::Tag tag = fe::Tag::Sync;
    std::string_view raw;  ///< the whole message (type byte, length, body) inside Request::bytes()
    View view;
    bool malformed = false;

    template <class T>
    [[nodiscard]] const T* as() const noexcept
    {
        return std::get_if<T>(&view);
    }
};

/// A complete request. Views point into its own byte buffer, which moves with
/// it (a vector: no small-buffer copy), so a Request can be kept and re-sent
/// (retries) as long as it lives. Not copyable: views would point into the
/// original.
class Request {
public:
    Request() = default;
    Request(Request&&) noexcept = default;
    Request& operator=(Request&&) noexcept = default;
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    [[nodiscard]] std::string_view bytes() const noexcept { return {bytes_.data(), bytes_.size()}; }
    [[nodiscard]] std::span<const RequestMessage> messages() const noexcept { return messages_; }
    [[nodiscard]] bool empty() const noexcept { return messages_.empty(); }
    /// The last message: the boundary that completed the request.
    [[nodiscard]] fe::Tag boundary() const noexcept { return messages_.back().tag; }
    /// Ends in Sync, Query or FunctionCall: the server answers with ReadyForQuery.
    /// A request that is not synced (Flush, or the first part of a long one
    /// taken early) leaves the server in the middle of an extended request.
    [[nodiscard]] bool synced() const noexcept;
    /// Has extended-protocol messages (Parse, Bind, Describe, Execute, Close, Sync, Flush).
    [[nodiscard]] bool extended() const noexcept { return extended_; }
    /// ReadyForQuery replies the server owes for it (one per Sync, Query, FunctionCall).
    [[nodiscard]] std::size_t sync_count() const noexcept { return sync_count_; }
    /// Runs something: a Query, an Execute or a FunctionCall (a Parse, Bind or
    /// Describe alone changes no data).
    [[nodiscard]] bool executes() const noexcept { return executes_; }
    /// Only a single Query message.
    [[nodiscard]] bool is_single_query() const noexcept
    {
        return messages_.size() == 1 && messages_.front().tag == fe::Tag::Query;
    }

private:
    friend class RequestAssembler;
    std::vector<char> bytes_;
    std::vector<RequestMessage> messages_;
    bool extended_ = false;
    bool executes_ = false;
    std::size_t sync_count_ = 0;
};

/// Groups frontend frames into Requests (PgDog's is_complete): a request ends
/// at Query, Sync, Flush or FunctionCall. COPY data is not a request: the
/// session relays CopyData/CopyDone/CopyFail straight to the server running
/// the COPY and never pushes them here.
class RequestAssembler {
public:
    /// Copies one frame in; true when it completed a request (take() it).
    bool push(const Frame& frame);
    /// The completed request, parsed; the assembler starts an empty one.
    /// Also takes the messages of a request still under way (a long one sent
    /// on in parts): the rest follows as further requests.
    [[nodiscard]] Request take();
    /// Messages gathered for the request under way, and their bytes.
    [[nodiscard]] std::size_t pending() const noexcept { return frames_.size(); }
    [[nodiscard]] std::size_t pending_bytes() const noexcept { return bytes_.size(); }
    /// Drops the request under way.
    void clear() noexcept;

private:
    struct FrameAt {
        char tag;
        std::size_t offset;
        std::size_t size;
    };
    std::vector<char> bytes_;
    std::vector<FrameAt> frames_;
};

/// The Request a client sends for `sql` as one simple Query.
[[nodiscard]] Request make_query_request(std::string_view sql);

/// A short description for logs: each message's type and the name or start
/// of text it carries ("P(q1) B(q1) E S").
[[nodiscard]] std::string describe(const Request& request);

/// True for the tags that end a request.
[[nodiscard]] bool is_request_boundary(fe::Tag t) noexcept;

}  // namespace pgswitch::wire
