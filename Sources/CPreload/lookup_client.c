/*
 * The client API (nfq_redirect.h) and the lookups the preload library shares with it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "nfqr_internal.h"

const char *nfqr_answer_name(nfqr_answer answer) {
    switch (answer) {
    case NFQR_FOUND: return "found";
    case NFQR_NOT_REDIRECTED: return "not redirected";
    case NFQR_NOT_FOUND: return "not found";
    case NFQR_EXPIRED: return "expired";
    case NFQR_DENIED: return "denied";
    case NFQR_BAD_REQUEST: return "bad request";
    case NFQR_UNAVAILABLE: return "daemon unavailable";
    case NFQR_BAD_REPLY: return "bad reply";
    case NFQR_BAD_SOCKET: return "bad socket";
    }
    return "unknown answer";
}

static nfqr_answer bad_socket(int error) {
    errno = error;
    return NFQR_BAD_SOCKET;
}

nfqr_answer nfqr_inspect_socket(int fd, nfqr_socket *out) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0)
        return NFQR_BAD_SOCKET;
    if (!nfqr_endpoint_from_sockaddr((struct sockaddr *)&address, length, &out->local))
        return bad_socket(EAFNOSUPPORT);
    out->family = address.ss_family;

    socklen_t protocol_length = sizeof out->protocol;
    if (nfqr_real_getsockopt()(fd, SOL_SOCKET, SO_PROTOCOL, &out->protocol, &protocol_length) != 0)
        return NFQR_BAD_SOCKET;
    if (out->protocol != IPPROTO_TCP && out->protocol != IPPROTO_UDP)
        return bad_socket(EPROTONOSUPPORT);

    length = sizeof address;
    if (getpeername(fd, (struct sockaddr *)&address, &length) != 0)
        return NFQR_BAD_SOCKET;
    if (!nfqr_endpoint_from_sockaddr((struct sockaddr *)&address, length, &out->peer) ||
        out->peer.is_v4 != out->local.is_v4)
        return bad_socket(EAFNOSUPPORT);
    return NFQR_FOUND;
}

/* One request, one answer line, parsed; a found answer must be of the asked family. */
static nfqr_answer ask(const char *request, size_t length, int pass_fd, bool want_v4, nfqr_endpoint *original) {
    char reply[NFQR_REPLY_MAX];
    size_t reply_length = 0;
    switch (nfqr_transact(request, length, pass_fd, reply, &reply_length)) {
    case NFQR_TRANSFER_OK: break;
    case NFQR_TRANSFER_UNAVAILABLE: return NFQR_UNAVAILABLE;
    case NFQR_TRANSFER_BAD_REPLY: return NFQR_BAD_REPLY;
    }
    nfqr_endpoint answer;
    nfqr_answer result = nfqr_parse_reply(reply, reply_length, &answer);
    if (result == NFQR_FOUND) {
        if (answer.is_v4 != want_v4)
            return NFQR_BAD_REPLY;
        *original = answer;
    }
    return result;
}

nfqr_answer nfqr_lookup_tuple(int protocol, const nfqr_endpoint *client, const nfqr_endpoint *local,
                              nfqr_endpoint *original) {
    char request[NFQR_REQUEST_MAX];
    size_t length = nfqr_format_lookup(request, protocol, client, local);
    return ask(request, length, -1, local->is_v4, original);
}

nfqr_answer nfqr_lookup_descriptor(int fd, bool want_v4, nfqr_endpoint *original) {
    static const char request[] = "LOOKUPFD\n";
    return ask(request, sizeof request - 1, fd, want_v4, original);
}

static nfqr_answer original_of_socket(int fd, bool by_descriptor, struct sockaddr_storage *out, socklen_t *outlen) {
    nfqr_socket socket_view;
    nfqr_answer answer = nfqr_inspect_socket(fd, &socket_view);
    if (answer != NFQR_FOUND)
        return answer;
    nfqr_endpoint original;
    answer = by_descriptor ? nfqr_lookup_descriptor(fd, socket_view.local.is_v4, &original)
                           : nfqr_lookup_tuple(socket_view.protocol, &socket_view.peer, &socket_view.local, &original);
    if (answer != NFQR_FOUND)
        return answer;
    uint32_t flowinfo = 0, scope_id = 0;
    if (socket_view.family == AF_INET6)
        nfqr_kernel_sin6_fields(fd, &original, &flowinfo, &scope_id);
    socklen_t length = nfqr_shape_original(socket_view.family, &original, flowinfo, scope_id, out);
    if (outlen != NULL)
        *outlen = length;
    return NFQR_FOUND;
}

nfqr_answer nfqr_original_dst(int fd, struct sockaddr_storage *out, socklen_t *outlen) {
    return original_of_socket(fd, false, out, outlen);
}

nfqr_answer nfqr_original_dst_fd(int fd, struct sockaddr_storage *out, socklen_t *outlen) {
    return original_of_socket(fd, true, out, outlen);
}

static socklen_t sockaddr_size(const struct sockaddr *address) {
    return address->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
           : address->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : 0;
}

nfqr_answer nfqr_lookup(int protocol, const struct sockaddr *client, const struct sockaddr *local,
                        struct sockaddr_storage *out, socklen_t *outlen) {
    nfqr_endpoint client_endpoint, local_endpoint, original;
    if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
        return bad_socket(EPROTONOSUPPORT);
    if (client == NULL || local == NULL || out == NULL)
        return bad_socket(EINVAL);
    if (!nfqr_endpoint_from_sockaddr(client, sockaddr_size(client), &client_endpoint) ||
        !nfqr_endpoint_from_sockaddr(local, sockaddr_size(local), &local_endpoint) ||
        client_endpoint.is_v4 != local_endpoint.is_v4)
        return bad_socket(EAFNOSUPPORT);
    nfqr_answer answer = nfqr_lookup_tuple(protocol, &client_endpoint, &local_endpoint, &original);
    if (answer != NFQR_FOUND)
        return answer;
    /* No socket to ask for its bound interface: a link-local answer takes the local scope. */
    uint32_t scope_id = 0;
    if (local->sa_family == AF_INET6 && nfqr_needs_scope_id(&original))
        scope_id = ((const struct sockaddr_in6 *)local)->sin6_scope_id;
    socklen_t length = nfqr_shape_original(local->sa_family, &original, 0, scope_id, out);
    if (outlen != NULL)
        *outlen = length;
    return NFQR_FOUND;
}
