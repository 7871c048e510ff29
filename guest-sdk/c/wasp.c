/*
 * wasp.c: the Winsock-style C API of wasp.h over the generated bindings
 * (bindings/plugin.h). Converts Winsock numbers and structures to and from
 * the WIT forms: error-code ordinals, flag bit positions, socket-address
 * variants, lists.
 */
#include "wasp.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* Winsock number and name of each WIT error-code ordinal (the order of
 * wit/types.wit; the numbers of guest-sdk/src/error.rs). */
static const struct {
    int code;
    const char *name;
} wsa_errors[] = {
    {6, "WSA_INVALID_HANDLE"},
    {995, "WSA_OPERATION_ABORTED"},
    {996, "WSA_IO_INCOMPLETE"},
    {997, "WSA_IO_PENDING"},
    {10004, "WSAEINTR"},
    {10013, "WSAEACCES"},
    {10014, "WSAEFAULT"},
    {10022, "WSAEINVAL"},
    {10024, "WSAEMFILE"},
    {10035, "WSAEWOULDBLOCK"},
    {10036, "WSAEINPROGRESS"},
    {10037, "WSAEALREADY"},
    {10038, "WSAENOTSOCK"},
    {10039, "WSAEDESTADDRREQ"},
    {10040, "WSAEMSGSIZE"},
    {10041, "WSAEPROTOTYPE"},
    {10042, "WSAENOPROTOOPT"},
    {10043, "WSAEPROTONOSUPPORT"},
    {10044, "WSAESOCKTNOSUPPORT"},
    {10045, "WSAEOPNOTSUPP"},
    {10046, "WSAEPFNOSUPPORT"},
    {10047, "WSAEAFNOSUPPORT"},
    {10048, "WSAEADDRINUSE"},
    {10049, "WSAEADDRNOTAVAIL"},
    {10050, "WSAENETDOWN"},
    {10051, "WSAENETUNREACH"},
    {10052, "WSAENETRESET"},
    {10053, "WSAECONNABORTED"},
    {10054, "WSAECONNRESET"},
    {10055, "WSAENOBUFS"},
    {10056, "WSAEISCONN"},
    {10057, "WSAENOTCONN"},
    {10058, "WSAESHUTDOWN"},
    {10060, "WSAETIMEDOUT"},
    {10061, "WSAECONNREFUSED"},
    {10065, "WSAEHOSTUNREACH"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(COUNT(wsa_errors) == WASP_SPI_TYPES_ERROR_CODE_WSAEHOSTUNREACH + 1,
               "one Winsock number per WIT error-code case");
/* WSPSetSockOpt builds the sockopt variant case from the sockopt-name. */
_Static_assert(WASP_SPI_SOCKETS_SOCKOPT_CONNECT_DATA == WASP_SPI_SOCKETS_SOCKOPT_NAME_CONNECT_DATA &&
                   WASP_SPI_SOCKETS_SOCKOPT_LINGER == WASP_SPI_SOCKETS_SOCKOPT_NAME_LINGER &&
                   WASP_SPI_SOCKETS_SOCKOPT_MULTICAST_LOOP ==
                       WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_LOOP,
               "sockopt cases in the order of sockopt-name");

static int last_error;

int WSAGetLastError(void) { return last_error; }

void WSASetLastError(int iError) { last_error = iError; }

int wasp_error_from_wit(wasp_spi_types_error_code_t code) {
    return code < COUNT(wsa_errors) ? wsa_errors[code].code : -1;
}

const char *wasp_error_name(int code) {
    if (code == 0) {
        return "NO_ERROR";
    }
    for (size_t i = 0; i < COUNT(wsa_errors); i++) {
        if (wsa_errors[i].code == code) {
            return wsa_errors[i].name;
        }
    }
    return "UNKNOWN";
}

/* Records a failure: *lpErrno and the WSAGetLastError mirror. */
static void set_error(int *lpErrno, int code) {
    last_error = code;
    if (lpErrno) {
        *lpErrno = code;
    }
}

static int fail(int *lpErrno, int code) {
    set_error(lpErrno, code);
    return SOCKET_ERROR;
}

static SOCKET fail_socket(int *lpErrno, int code) {
    set_error(lpErrno, code);
    return INVALID_SOCKET;
}

static int fail_wit(int *lpErrno, wasp_spi_types_error_code_t code) {
    return fail(lpErrno, wasp_error_from_wit(code));
}

/* ------------------------------------------------------------------------
 * Flags: Winsock values <-> WIT bit positions
 * ---------------------------------------------------------------------- */

struct flag_map {
    uint32_t winsock;
    uint32_t wit;
};

static const struct flag_map socket_flag_map[] = {
    {WSA_FLAG_OVERLAPPED, WASP_SPI_TYPES_SOCKET_FLAGS_OVERLAPPED},
    {WSA_FLAG_MULTIPOINT_C_ROOT, WASP_SPI_TYPES_SOCKET_FLAGS_MULTIPOINT_C_ROOT},
    {WSA_FLAG_MULTIPOINT_C_LEAF, WASP_SPI_TYPES_SOCKET_FLAGS_MULTIPOINT_C_LEAF},
    {WSA_FLAG_MULTIPOINT_D_ROOT, WASP_SPI_TYPES_SOCKET_FLAGS_MULTIPOINT_D_ROOT},
    {WSA_FLAG_MULTIPOINT_D_LEAF, WASP_SPI_TYPES_SOCKET_FLAGS_MULTIPOINT_D_LEAF},
};

static const struct flag_map message_flag_map[] = {
    {MSG_OOB, WASP_SPI_TYPES_MESSAGE_FLAGS_OOB},
    {MSG_PEEK, WASP_SPI_TYPES_MESSAGE_FLAGS_PEEK},
    {MSG_DONTROUTE, WASP_SPI_TYPES_MESSAGE_FLAGS_DONT_ROUTE},
    {MSG_PARTIAL, WASP_SPI_TYPES_MESSAGE_FLAGS_PARTIAL},
    {MSG_WAITALL, WASP_SPI_TYPES_MESSAGE_FLAGS_WAIT_ALL},
};

static const struct flag_map fd_event_map[] = {
    {FD_READ, WASP_SPI_TYPES_FD_EVENTS_READ},
    {FD_WRITE, WASP_SPI_TYPES_FD_EVENTS_WRITE},
    {FD_OOB, WASP_SPI_TYPES_FD_EVENTS_OOB},
    {FD_ACCEPT, WASP_SPI_TYPES_FD_EVENTS_ACCEPT},
    {FD_CONNECT, WASP_SPI_TYPES_FD_EVENTS_CONNECT},
    {FD_CLOSE, WASP_SPI_TYPES_FD_EVENTS_CLOSE},
    {FD_QOS, WASP_SPI_TYPES_FD_EVENTS_QOS},
    {FD_GROUP_QOS, WASP_SPI_TYPES_FD_EVENTS_GROUP_QOS},
    {FD_ROUTING_INTERFACE_CHANGE, WASP_SPI_TYPES_FD_EVENTS_ROUTING_INTERFACE_CHANGE},
    {FD_ADDRESS_LIST_CHANGE, WASP_SPI_TYPES_FD_EVENTS_ADDRESS_LIST_CHANGE},
};

static const struct flag_map service_flag_map[] = {
    {XP1_CONNECTIONLESS, WASP_SPI_TYPES_SERVICE_FLAGS_CONNECTIONLESS},
    {XP1_GUARANTEED_DELIVERY, WASP_SPI_TYPES_SERVICE_FLAGS_GUARANTEED_DELIVERY},
    {XP1_GUARANTEED_ORDER, WASP_SPI_TYPES_SERVICE_FLAGS_GUARANTEED_ORDER},
    {XP1_MESSAGE_ORIENTED, WASP_SPI_TYPES_SERVICE_FLAGS_MESSAGE_ORIENTED},
    {XP1_GRACEFUL_CLOSE, WASP_SPI_TYPES_SERVICE_FLAGS_GRACEFUL_CLOSE},
    {XP1_EXPEDITED_DATA, WASP_SPI_TYPES_SERVICE_FLAGS_EXPEDITED_DATA},
    {XP1_CONNECT_DATA, WASP_SPI_TYPES_SERVICE_FLAGS_CONNECT_DATA},
    {XP1_SUPPORT_BROADCAST, WASP_SPI_TYPES_SERVICE_FLAGS_SUPPORT_BROADCAST},
    {XP1_SUPPORT_MULTIPOINT, WASP_SPI_TYPES_SERVICE_FLAGS_SUPPORT_MULTIPOINT},
    {XP1_MULTIPOINT_CONTROL_PLANE, WASP_SPI_TYPES_SERVICE_FLAGS_MULTIPOINT_CONTROL_PLANE},
    {XP1_MULTIPOINT_DATA_PLANE, WASP_SPI_TYPES_SERVICE_FLAGS_MULTIPOINT_DATA_PLANE},
    {XP1_QOS_SUPPORTED, WASP_SPI_TYPES_SERVICE_FLAGS_QOS_SUPPORTED},
    {XP1_PARTIAL_MESSAGE, WASP_SPI_TYPES_SERVICE_FLAGS_PARTIAL_MESSAGE},
};

/* Winsock flags to WIT flags; 0 when a bit has no WIT counterpart. */
static int to_wit_flags(const struct flag_map *map, size_t n, uint32_t winsock, uint32_t *wit) {
    uint32_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (winsock & map[i].winsock) {
            out |= map[i].wit;
            winsock &= ~map[i].winsock;
        }
    }
    *wit = out;
    return winsock == 0;
}

static uint32_t from_wit_flags(const struct flag_map *map, size_t n, uint32_t wit) {
    uint32_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (wit & map[i].wit) {
            out |= map[i].winsock;
        }
    }
    return out;
}

static int message_flags(DWORD flags, wasp_spi_types_message_flags_t *out) {
    uint32_t wit;
    if (!to_wit_flags(message_flag_map, COUNT(message_flag_map), flags, &wit)) {
        return WSAEOPNOTSUPP;
    }
    *out = (wasp_spi_types_message_flags_t)wit;
    return 0;
}

/* ------------------------------------------------------------------------
 * Socket addresses
 * ---------------------------------------------------------------------- */

/* A Winsock socket address to the WIT variant; 0 or a Winsock error. */
static int to_wit_addr(const SOCKADDR *name, int namelen, wasp_spi_types_socket_address_t *out) {
    if (name == NULL || namelen < (int)sizeof(ADDRESS_FAMILY)) {
        return WSAEFAULT;
    }
    if (name->sa_family == AF_INET) {
        SOCKADDR_IN in;
        if (namelen < (int)sizeof in) {
            return WSAEFAULT;
        }
        memcpy(&in, name, sizeof in);
        const uint8_t *b = (const uint8_t *)&in.sin_addr.s_addr;
        out->tag = WASP_SPI_TYPES_SOCKET_ADDRESS_IPV4;
        out->val.ipv4.port = ntohs(in.sin_port);
        out->val.ipv4.address.f0 = b[0];
        out->val.ipv4.address.f1 = b[1];
        out->val.ipv4.address.f2 = b[2];
        out->val.ipv4.address.f3 = b[3];
        return 0;
    }
    if (name->sa_family == AF_INET6) {
        SOCKADDR_IN6 in6;
        if (namelen < (int)sizeof in6) {
            return WSAEFAULT;
        }
        memcpy(&in6, name, sizeof in6);
        uint16_t g[8];
        for (int i = 0; i < 8; i++) {
            g[i] = (uint16_t)((in6.sin6_addr.s6_addr[2 * i] << 8) | in6.sin6_addr.s6_addr[2 * i + 1]);
        }
        out->tag = WASP_SPI_TYPES_SOCKET_ADDRESS_IPV6;
        out->val.ipv6.port = ntohs(in6.sin6_port);
        out->val.ipv6.flow_info = ntohl(in6.sin6_flowinfo);
        out->val.ipv6.address = (plugin_tuple8_u16_u16_u16_u16_u16_u16_u16_u16_t){
            g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]};
        out->val.ipv6.scope_id = in6.sin6_scope_id;
        return 0;
    }
    return WSAEAFNOSUPPORT;
}

/* The WIT variant to a Winsock socket address in name / *namelen; 0 or
 * WSAEFAULT. NULL name or namelen: nothing stored. */
static int from_wit_addr(const wasp_spi_types_socket_address_t *a, SOCKADDR *name, int *namelen) {
    if (name == NULL || namelen == NULL) {
        return 0;
    }
    if (a->tag == WASP_SPI_TYPES_SOCKET_ADDRESS_IPV4) {
        SOCKADDR_IN in;
        memset(&in, 0, sizeof in);
        if (*namelen < (int)sizeof in) {
            return WSAEFAULT;
        }
        uint8_t *b = (uint8_t *)&in.sin_addr.s_addr;
        in.sin_family = AF_INET;
        in.sin_port = htons(a->val.ipv4.port);
        b[0] = a->val.ipv4.address.f0;
        b[1] = a->val.ipv4.address.f1;
        b[2] = a->val.ipv4.address.f2;
        b[3] = a->val.ipv4.address.f3;
        memcpy(name, &in, sizeof in);
        *namelen = (int)sizeof in;
        return 0;
    }
    SOCKADDR_IN6 in6;
    memset(&in6, 0, sizeof in6);
    if (*namelen < (int)sizeof in6) {
        return WSAEFAULT;
    }
    const plugin_tuple8_u16_u16_u16_u16_u16_u16_u16_u16_t *t = &a->val.ipv6.address;
    uint16_t g[8] = {t->f0, t->f1, t->f2, t->f3, t->f4, t->f5, t->f6, t->f7};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(a->val.ipv6.port);
    in6.sin6_flowinfo = htonl(a->val.ipv6.flow_info);
    for (int i = 0; i < 8; i++) {
        in6.sin6_addr.s6_addr[2 * i] = (uint8_t)(g[i] >> 8);
        in6.sin6_addr.s6_addr[2 * i + 1] = (uint8_t)g[i];
    }
    in6.sin6_scope_id = a->val.ipv6.scope_id;
    memcpy(name, &in6, sizeof in6);
    *namelen = (int)sizeof in6;
    return 0;
}

/* ------------------------------------------------------------------------
 * Buffers
 * ---------------------------------------------------------------------- */

/* Gathers WSABUFs into the WIT form: bytes back to back and the lengths.
 * *owned is set when data->ptr / lengths->ptr were allocated. */
struct gathered {
    plugin_list_u8_t data;
    plugin_list_u32_t lengths;
    uint8_t *heap_data;
    uint32_t *heap_lengths;
    uint32_t one_length;
};

static int gather(const WSABUF *bufs, DWORD count, struct gathered *g) {
    memset(g, 0, sizeof *g);
    if (count > 0 && bufs == NULL) {
        return WSAEFAULT;
    }
    uint64_t total = 0;
    for (DWORD i = 0; i < count; i++) {
        if (bufs[i].len > 0 && bufs[i].buf == NULL) {
            return WSAEFAULT;
        }
        total += bufs[i].len;
    }
    if (total > UINT32_MAX) {
        return WSAEFAULT;
    }
    if (count == 1) {
        g->one_length = bufs[0].len;
        g->data.ptr = (uint8_t *)bufs[0].buf;
        g->data.len = bufs[0].len;
        g->lengths.ptr = &g->one_length;
        g->lengths.len = 1;
        return 0;
    }
    if (count > 0) {
        g->heap_lengths = malloc(count * sizeof(uint32_t));
        g->heap_data = malloc(total > 0 ? (size_t)total : 1);
        if (g->heap_lengths == NULL || g->heap_data == NULL) {
            free(g->heap_lengths);
            free(g->heap_data);
            return WSAENOBUFS;
        }
        size_t off = 0;
        for (DWORD i = 0; i < count; i++) {
            if (bufs[i].len > 0) {
                memcpy(g->heap_data + off, bufs[i].buf, bufs[i].len);
            }
            off += bufs[i].len;
            g->heap_lengths[i] = bufs[i].len;
        }
    }
    g->data.ptr = g->heap_data;
    g->data.len = (size_t)total;
    g->lengths.ptr = g->heap_lengths;
    g->lengths.len = count;
    return 0;
}

static void gathered_free(struct gathered *g) {
    free(g->heap_data);
    free(g->heap_lengths);
}

/* The room of the buffers of a receive; 0 or a Winsock error. */
static int buffers_room(const WSABUF *bufs, DWORD count, uint32_t *room) {
    if (count > 0 && bufs == NULL) {
        return WSAEFAULT;
    }
    uint64_t total = 0;
    for (DWORD i = 0; i < count; i++) {
        if (bufs[i].len > 0 && bufs[i].buf == NULL) {
            return WSAEFAULT;
        }
        total += bufs[i].len;
    }
    *room = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
    return 0;
}

/* Scatters received bytes into the buffers, in order. */
static void scatter(const WSABUF *bufs, DWORD count, const uint8_t *data, size_t len) {
    size_t off = 0;
    for (DWORD i = 0; i < count && off < len; i++) {
        size_t n = len - off < bufs[i].len ? len - off : bufs[i].len;
        memcpy(bufs[i].buf, data + off, n);
        off += n;
    }
}

/* ------------------------------------------------------------------------
 * Message queues
 * ---------------------------------------------------------------------- */

struct wasp_queue {
    wasp_spi_messages_own_message_queue_t own;
};

static wasp_spi_messages_borrow_message_queue_t borrow(wasp_queue *q) {
    return wasp_spi_messages_borrow_message_queue(q->own);
}

wasp_queue *wasp_queue_new(uint32_t capacity) {
    if (capacity < 1 || capacity > 65536) {
        return NULL;
    }
    wasp_queue *q = malloc(sizeof *q);
    if (q == NULL) {
        return NULL;
    }
    q->own = wasp_spi_messages_constructor_message_queue(capacity);
    return q;
}

static void to_msg(const wasp_spi_messages_message_t *m, wasp_msg *out) {
    out->message = m->msg;
    out->wParam = m->socket;
    out->lParam = m->lparam;
    out->iError = m->error.is_some ? wasp_error_from_wit(m->error.val) : 0;
    out->bCompletion = m->completion.is_some;
    out->Token = m->completion.is_some ? m->completion.val.token : 0;
    out->cbTransferred = m->completion.is_some ? m->completion.val.bytes : 0;
}

int wasp_queue_get(wasp_queue *q, int64_t timeout_ms, wasp_msg *msg) {
    uint64_t ms = timeout_ms < 0 ? 0 : (uint64_t)timeout_ms;
    wasp_spi_messages_message_t m;
    if (!wasp_spi_messages_method_message_queue_get(borrow(q), timeout_ms < 0 ? NULL : &ms, &m)) {
        return 0;
    }
    to_msg(&m, msg);
    return 1;
}

int wasp_queue_peek(wasp_queue *q, wasp_msg *msg) {
    wasp_spi_messages_message_t m;
    if (!wasp_spi_messages_method_message_queue_peek(borrow(q), &m)) {
        return 0;
    }
    to_msg(&m, msg);
    return 1;
}

uint32_t wasp_queue_drain(wasp_queue *q, wasp_msg *msgs, uint32_t max) {
    wasp_spi_messages_list_message_t list;
    wasp_spi_messages_method_message_queue_drain(borrow(q), max, &list);
    uint32_t n = 0;
    for (size_t i = 0; i < list.len && n < max; i++) {
        to_msg(&list.ptr[i], &msgs[n++]);
    }
    wasp_spi_messages_list_message_free(&list);
    return n;
}

uint32_t wasp_queue_len(wasp_queue *q) {
    return wasp_spi_messages_method_message_queue_len(borrow(q));
}

uint64_t wasp_queue_overflows(wasp_queue *q) {
    return wasp_spi_messages_method_message_queue_overflows(borrow(q));
}

void wasp_queue_close(wasp_queue *q) { wasp_spi_messages_method_message_queue_close(borrow(q)); }

wasi_io_poll_own_pollable_t wasp_queue_subscribe(wasp_queue *q) {
    return wasp_spi_readiness_subscribe(borrow(q));
}

void wasp_queue_free(wasp_queue *q) {
    if (q != NULL) {
        wasp_spi_messages_message_queue_drop_own(q->own);
        free(q);
    }
}

/* ------------------------------------------------------------------------
 * Overlapped receives: the buffers their data goes to
 * ---------------------------------------------------------------------- */

struct pending_recv {
    struct pending_recv *next;
    SOCKET s;
    uint64_t token;
    WSABUF *bufs;
    DWORD count;
    SOCKADDR *from;
    int *fromlen;
};

static struct pending_recv *pending_recvs;

static struct pending_recv **find_pending(SOCKET s, uint64_t token) {
    struct pending_recv **p = &pending_recvs;
    while (*p != NULL && !((*p)->s == s && (*p)->token == token)) {
        p = &(*p)->next;
    }
    return p;
}

static void remove_pending(struct pending_recv **p) {
    struct pending_recv *r = *p;
    *p = r->next;
    free(r->bufs);
    free(r);
}

static void remember_pending(SOCKET s, uint64_t token, const WSABUF *bufs, DWORD count,
                             SOCKADDR *from, int *fromlen) {
    struct pending_recv **old = find_pending(s, token);
    if (*old != NULL) {
        remove_pending(old);
    }
    struct pending_recv *r = malloc(sizeof *r);
    WSABUF *copy = malloc(count > 0 ? count * sizeof(WSABUF) : 1);
    if (r == NULL || copy == NULL) {
        free(r);
        free(copy);
        return;
    }
    if (count > 0) {
        memcpy(copy, bufs, count * sizeof(WSABUF));
    }
    *r = (struct pending_recv){pending_recvs, s, token, copy, count, from, fromlen};
    pending_recvs = r;
}

static int to_wit_overlapped(const WSAOVERLAPPED *ov, wasp_spi_sockets_overlapped_t *out) {
    if (ov->hQueue == NULL) {
        return WSAEINVAL;
    }
    out->token = ov->Token;
    out->queue = borrow(ov->hQueue);
    out->msg = ov->wMsg;
    return 0;
}

/* ------------------------------------------------------------------------
 * Protocol info and QoS
 * ---------------------------------------------------------------------- */

static void from_wit_protocol_info(const wasp_spi_types_protocol_info_t *p, WSAPROTOCOL_INFO *out) {
    memset(out, 0, sizeof *out);
    out->dwServiceFlags1 = from_wit_flags(service_flag_map, COUNT(service_flag_map), p->service_flags);
    out->dwCatalogEntryId = p->catalog_entry_id;
    out->iAddressFamily = p->address_family;
    out->iSocketType = p->socket_type;
    out->iProtocol = p->protocol;
    out->dwMessageSize = p->max_message_size;
    size_t n = p->name.len < WSAPROTOCOL_LEN ? p->name.len : WSAPROTOCOL_LEN;
    memcpy(out->szProtocol, p->name.ptr, n);
    out->szProtocol[n] = '\0';
}

/* The WIT form borrows the name from `in`. */
static void to_wit_protocol_info(const WSAPROTOCOL_INFO *in, wasp_spi_types_protocol_info_t *out) {
    uint32_t flags;
    to_wit_flags(service_flag_map, COUNT(service_flag_map), in->dwServiceFlags1, &flags);
    out->service_flags = (wasp_spi_types_service_flags_t)flags;
    out->catalog_entry_id = in->dwCatalogEntryId;
    out->address_family = in->iAddressFamily;
    out->socket_type = in->iSocketType;
    out->protocol = in->iProtocol;
    out->max_message_size = in->dwMessageSize;
    out->name.ptr = (uint8_t *)in->szProtocol;
    const char *nul = memchr(in->szProtocol, '\0', sizeof in->szProtocol);
    out->name.len = nul ? (size_t)(nul - in->szProtocol) : sizeof in->szProtocol;
}

static const struct {
    SERVICETYPE winsock;
    wasp_spi_types_service_type_t wit;
} service_types[] = {
    {SERVICETYPE_NOTRAFFIC, WASP_SPI_TYPES_SERVICE_TYPE_NO_TRAFFIC},
    {SERVICETYPE_BESTEFFORT, WASP_SPI_TYPES_SERVICE_TYPE_BEST_EFFORT},
    {SERVICETYPE_CONTROLLEDLOAD, WASP_SPI_TYPES_SERVICE_TYPE_CONTROLLED_LOAD},
    {SERVICETYPE_GUARANTEED, WASP_SPI_TYPES_SERVICE_TYPE_GUARANTEED},
    {SERVICETYPE_NOCHANGE, WASP_SPI_TYPES_SERVICE_TYPE_NOT_SPECIFIED},
};

static int to_wit_flowspec(const FLOWSPEC *f, wasp_spi_types_flowspec_t *out) {
    size_t i = 0;
    while (i < COUNT(service_types) && service_types[i].winsock != f->ServiceType) {
        i++;
    }
    if (i == COUNT(service_types)) {
        return WSAEINVAL;
    }
    *out = (wasp_spi_types_flowspec_t){
        .token_rate = f->TokenRate,
        .token_bucket_size = f->TokenBucketSize,
        .peak_bandwidth = f->PeakBandwidth,
        .latency = f->Latency,
        .delay_variation = f->DelayVariation,
        .service_type = service_types[i].wit,
        .max_sdu_size = f->MaxSduSize,
        .minimum_policed_size = f->MinimumPolicedSize,
    };
    return 0;
}

static void from_wit_flowspec(const wasp_spi_types_flowspec_t *f, FLOWSPEC *out) {
    SERVICETYPE st = SERVICETYPE_NOCHANGE;
    for (size_t i = 0; i < COUNT(service_types); i++) {
        if (service_types[i].wit == f->service_type) {
            st = service_types[i].winsock;
        }
    }
    *out = (FLOWSPEC){f->token_rate,   f->token_bucket_size, f->peak_bandwidth,
                      f->latency,      f->delay_variation,   st,
                      f->max_sdu_size, f->minimum_policed_size};
}

/* The WIT form borrows the provider-specific bytes from `in`. */
static int to_wit_qos(const QOS *in, wasp_spi_types_qos_t *out) {
    int e = to_wit_flowspec(&in->SendingFlowspec, &out->sending);
    if (e == 0) {
        e = to_wit_flowspec(&in->ReceivingFlowspec, &out->receiving);
    }
    if (e == 0 && in->ProviderSpecific.len > 0 && in->ProviderSpecific.buf == NULL) {
        e = WSAEFAULT;
    }
    out->provider_specific.ptr = (uint8_t *)in->ProviderSpecific.buf;
    out->provider_specific.len = in->ProviderSpecific.len;
    return e;
}

/* ------------------------------------------------------------------------
 * The WSP calls
 * ---------------------------------------------------------------------- */

SOCKET WSPSocket(int af, int type, int protocol, const WSAPROTOCOL_INFO *lpProtocolInfo,
                 GROUP g, DWORD dwFlags, int *lpErrno) {
    uint32_t flags;
    if (!to_wit_flags(socket_flag_map, COUNT(socket_flag_map), dwFlags & ~(DWORD)WSA_FLAG_NO_HANDLE_INHERIT,
                      &flags)) {
        return fail_socket(lpErrno, WSAEINVAL);
    }
    wasp_spi_types_protocol_info_t info;
    if (lpProtocolInfo != NULL) {
        to_wit_protocol_info(lpProtocolInfo, &info);
    }
    wasp_spi_sockets_socket_t s;
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_socket(af, type, protocol, lpProtocolInfo ? &info : NULL, g,
                                     (wasp_spi_types_socket_flags_t)flags, &s, &err)) {
        return fail_socket(lpErrno, wasp_error_from_wit(err));
    }
    return s;
}

int WSPBind(SOCKET s, const SOCKADDR *name, int namelen, int *lpErrno) {
    wasp_spi_types_socket_address_t addr;
    int e = to_wit_addr(name, namelen, &addr);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_bind(s, &addr, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

int WSPListen(SOCKET s, int backlog, int *lpErrno) {
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_listen(s, backlog < 0 ? 0u : (uint32_t)backlog, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

SOCKET WSPAccept(SOCKET s, SOCKADDR *addr, int *addrlen, int *lpErrno) {
    if (addr != NULL && addrlen != NULL && *addrlen < (int)sizeof(SOCKADDR_IN)) {
        return fail_socket(lpErrno, WSAEFAULT);
    }
    wasp_spi_sockets_tuple2_socket_socket_address_t ret;
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_accept(s, &ret, &err)) {
        return fail_socket(lpErrno, wasp_error_from_wit(err));
    }
    if (from_wit_addr(&ret.f1, addr, addrlen) != 0) {
        wasp_spi_sockets_wsp_close_socket(ret.f0, &err);
        return fail_socket(lpErrno, WSAEFAULT);
    }
    return ret.f0;
}

int WSPConnect(SOCKET s, const SOCKADDR *name, int namelen, int *lpErrno) {
    wasp_spi_types_socket_address_t addr;
    int e = to_wit_addr(name, namelen, &addr);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_connect(s, &addr, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

/* WSPSend and WSPSendTo (to == NULL: WSPSend). */
static int send_common(SOCKET s, const WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpSent,
                       DWORD dwFlags, const SOCKADDR *lpTo, int iTolen,
                       WSAOVERLAPPED *lpOverlapped, int *lpErrno) {
    wasp_spi_types_message_flags_t flags;
    int e = message_flags(dwFlags, &flags);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_types_socket_address_t to;
    if (lpTo != NULL && (e = to_wit_addr(lpTo, iTolen, &to)) != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_sockets_overlapped_t ov;
    if (lpOverlapped != NULL && (e = to_wit_overlapped(lpOverlapped, &ov)) != 0) {
        return fail(lpErrno, e);
    }
    struct gathered g;
    if ((e = gather(lpBuffers, dwBufferCount, &g)) != 0) {
        return fail(lpErrno, e);
    }
    uint32_t sent;
    wasp_spi_sockets_error_code_t err;
    bool ok = lpTo != NULL
                  ? wasp_spi_sockets_wsp_send_to(s, &g.data, &g.lengths, flags, &to,
                                                 lpOverlapped ? &ov : NULL, &sent, &err)
                  : wasp_spi_sockets_wsp_send(s, &g.data, &g.lengths, flags,
                                              lpOverlapped ? &ov : NULL, &sent, &err);
    gathered_free(&g);
    if (!ok) {
        return fail_wit(lpErrno, err);
    }
    if (lpSent != NULL) {
        *lpSent = sent;
    }
    return 0;
}

int WSPSend(SOCKET s, const WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesSent,
            DWORD dwFlags, WSAOVERLAPPED *lpOverlapped, int *lpErrno) {
    return send_common(s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, NULL, 0,
                       lpOverlapped, lpErrno);
}

int WSPSendTo(SOCKET s, const WSABUF *lpBuffers, DWORD dwBufferCount,
              DWORD *lpNumberOfBytesSent, DWORD dwFlags, const SOCKADDR *lpTo, int iTolen,
              WSAOVERLAPPED *lpOverlapped, int *lpErrno) {
    if (lpTo == NULL) {
        return fail(lpErrno, WSAEFAULT);
    }
    return send_common(s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpTo, iTolen,
                       lpOverlapped, lpErrno);
}

/* WSPRecv and WSPRecvFrom (want_from: WSPRecvFrom). */
static int recv_common(SOCKET s, WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpRecvd,
                       DWORD *lpFlags, int want_from, SOCKADDR *lpFrom, int *lpFromlen,
                       WSAOVERLAPPED *lpOverlapped, int *lpErrno) {
    wasp_spi_types_message_flags_t flags;
    int e = message_flags(lpFlags ? *lpFlags : 0, &flags);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    uint32_t room;
    if ((e = buffers_room(lpBuffers, dwBufferCount, &room)) != 0) {
        return fail(lpErrno, e);
    }
    if (lpFrom != NULL && lpFromlen != NULL && *lpFromlen < (int)sizeof(SOCKADDR_IN)) {
        return fail(lpErrno, WSAEFAULT);
    }
    wasp_spi_sockets_overlapped_t ov;
    if (lpOverlapped != NULL && (e = to_wit_overlapped(lpOverlapped, &ov)) != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_sockets_error_code_t err;
    plugin_list_u8_t data;
    wasp_spi_sockets_tuple2_list_u8_socket_address_t from;
    bool ok = want_from ? wasp_spi_sockets_wsp_recv_from(s, room, flags, lpOverlapped ? &ov : NULL,
                                                         &from, &err)
                        : wasp_spi_sockets_wsp_recv(s, room, flags, lpOverlapped ? &ov : NULL,
                                                    &data, &err);
    if (!ok) {
        if (lpOverlapped != NULL && err == WASP_SPI_TYPES_ERROR_CODE_WSA_IO_PENDING) {
            remember_pending(s, lpOverlapped->Token, lpBuffers, dwBufferCount,
                             want_from ? lpFrom : NULL, want_from ? lpFromlen : NULL);
        }
        return fail_wit(lpErrno, err);
    }
    if (want_from) {
        data = from.f0;
    }
    size_t n = data.len < room ? data.len : room;
    scatter(lpBuffers, dwBufferCount, data.ptr, n);
    plugin_list_u8_free(&data);
    if (lpRecvd != NULL) {
        *lpRecvd = (DWORD)n;
    }
    if (want_from && from_wit_addr(&from.f1, lpFrom, lpFromlen) != 0) {
        return fail(lpErrno, WSAEFAULT);
    }
    return 0;
}

int WSPRecv(SOCKET s, WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesRecvd,
            DWORD *lpFlags, WSAOVERLAPPED *lpOverlapped, int *lpErrno) {
    return recv_common(s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, 0, NULL, NULL,
                       lpOverlapped, lpErrno);
}

int WSPRecvFrom(SOCKET s, WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesRecvd,
                DWORD *lpFlags, SOCKADDR *lpFrom, int *lpFromlen, WSAOVERLAPPED *lpOverlapped,
                int *lpErrno) {
    return recv_common(s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, 1, lpFrom,
                       lpFromlen, lpOverlapped, lpErrno);
}

int WSPShutdown(SOCKET s, int how, int *lpErrno) {
    wasp_spi_types_shutdown_how_t h;
    switch (how) {
    case SD_RECEIVE:
        h = WASP_SPI_TYPES_SHUTDOWN_HOW_RECEIVE;
        break;
    case SD_SEND:
        h = WASP_SPI_TYPES_SHUTDOWN_HOW_SEND;
        break;
    case SD_BOTH:
        h = WASP_SPI_TYPES_SHUTDOWN_HOW_BOTH;
        break;
    default:
        return fail(lpErrno, WSAEINVAL);
    }
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_shutdown(s, h, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

int WSPCloseSocket(SOCKET s, int *lpErrno) {
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_close_socket(s, &err)) {
        return fail_wit(lpErrno, err);
    }
    struct pending_recv **p = &pending_recvs;
    while (*p != NULL) {
        if ((*p)->s == s) {
            remove_pending(p);
        } else {
            p = &(*p)->next;
        }
    }
    return 0;
}

static int ioctl_out_u32(uint32_t value, void *out, DWORD cbOut, DWORD *returned) {
    if (out == NULL || cbOut < sizeof(uint32_t)) {
        return WSAEFAULT;
    }
    memcpy(out, &value, sizeof value);
    if (returned != NULL) {
        *returned = sizeof value;
    }
    return 0;
}

int WSPIoctl(SOCKET s, DWORD dwIoControlCode, const void *lpvInBuffer, DWORD cbInBuffer,
             void *lpvOutBuffer, DWORD cbOutBuffer, DWORD *lpcbBytesReturned, int *lpErrno) {
    wasp_spi_sockets_ioctl_command_t cmd;
    int e = 0;
    if (lpcbBytesReturned != NULL) {
        *lpcbBytesReturned = 0;
    }
    switch (dwIoControlCode) {
    case FIONBIO: {
        uint32_t on;
        if (lpvInBuffer == NULL || cbInBuffer < sizeof on) {
            return fail(lpErrno, WSAEFAULT);
        }
        memcpy(&on, lpvInBuffer, sizeof on);
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_FIONBIO;
        cmd.val.fionbio = on != 0;
        break;
    }
    case FIONREAD:
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_FIONREAD;
        break;
    case SIOCATMARK:
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIOCATMARK;
        break;
    case SIO_SET_QOS: {
        QOS q;
        if (lpvInBuffer == NULL || cbInBuffer < sizeof q) {
            return fail(lpErrno, WSAEFAULT);
        }
        memcpy(&q, lpvInBuffer, sizeof q);
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIO_SET_QOS;
        if ((e = to_wit_qos(&q, &cmd.val.sio_set_qos)) != 0) {
            return fail(lpErrno, e);
        }
        break;
    }
    case SIO_GET_QOS:
        if (lpvOutBuffer == NULL || cbOutBuffer < sizeof(QOS)) {
            return fail(lpErrno, WSAEFAULT);
        }
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIO_GET_QOS;
        break;
    case SIO_ADDRESS_LIST_CHANGE:
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIO_ADDRESS_LIST_CHANGE;
        break;
    case SIO_FLUSH:
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIO_FLUSH;
        break;
    case SIO_ROUTING_INTERFACE_CHANGE:
        cmd.tag = WASP_SPI_SOCKETS_IOCTL_COMMAND_SIO_ROUTING_INTERFACE_CHANGE;
        if ((e = to_wit_addr(lpvInBuffer, (int)cbInBuffer, &cmd.val.sio_routing_interface_change)) != 0) {
            return fail(lpErrno, e);
        }
        break;
    default:
        return fail(lpErrno, WSAEINVAL);
    }
    if ((dwIoControlCode == FIONREAD || dwIoControlCode == SIOCATMARK) &&
        (lpvOutBuffer == NULL || cbOutBuffer < sizeof(uint32_t))) {
        return fail(lpErrno, WSAEFAULT);
    }
    wasp_spi_sockets_ioctl_result_t res;
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_ioctl(s, &cmd, &res, &err)) {
        return fail_wit(lpErrno, err);
    }
    switch (res.tag) {
    case WASP_SPI_SOCKETS_IOCTL_RESULT_BYTES:
        e = ioctl_out_u32(res.val.bytes, lpvOutBuffer, cbOutBuffer, lpcbBytesReturned);
        break;
    case WASP_SPI_SOCKETS_IOCTL_RESULT_FLAG:
        e = ioctl_out_u32(res.val.flag ? TRUE : FALSE, lpvOutBuffer, cbOutBuffer,
                          lpcbBytesReturned);
        break;
    case WASP_SPI_SOCKETS_IOCTL_RESULT_QOS: {
        QOS q;
        size_t extra = res.val.qos.provider_specific.len;
        if (lpvOutBuffer == NULL || cbOutBuffer < sizeof q + extra) {
            e = WSAEFAULT;
        } else {
            from_wit_flowspec(&res.val.qos.sending, &q.SendingFlowspec);
            from_wit_flowspec(&res.val.qos.receiving, &q.ReceivingFlowspec);
            q.ProviderSpecific.len = (ULONG)extra;
            q.ProviderSpecific.buf = extra > 0 ? (char *)lpvOutBuffer + sizeof q : NULL;
            if (extra > 0) {
                memcpy((char *)lpvOutBuffer + sizeof q, res.val.qos.provider_specific.ptr, extra);
            }
            memcpy(lpvOutBuffer, &q, sizeof q);
            if (lpcbBytesReturned != NULL) {
                *lpcbBytesReturned = (DWORD)(sizeof q + extra);
            }
        }
        break;
    }
    default:
        break;
    }
    wasp_spi_sockets_ioctl_result_free(&res);
    return e != 0 ? fail(lpErrno, e) : 0;
}

/* The WIT option of a Winsock (level, optname). */
static int sockopt_name(int level, int optname, wasp_spi_sockets_sockopt_name_t *out) {
    static const struct {
        int level, optname;
        wasp_spi_sockets_sockopt_name_t wit;
    } names[] = {
        {SOL_SOCKET, SO_BROADCAST, WASP_SPI_SOCKETS_SOCKOPT_NAME_BROADCAST},
        {SOL_SOCKET, SO_OOBINLINE, WASP_SPI_SOCKETS_SOCKOPT_NAME_OOB_INLINE},
        {SOL_SOCKET, SO_REUSEADDR, WASP_SPI_SOCKETS_SOCKOPT_NAME_REUSE_ADDRESS},
        {SOL_SOCKET, SO_KEEPALIVE, WASP_SPI_SOCKETS_SOCKOPT_NAME_KEEP_ALIVE},
        {IPPROTO_TCP, TCP_NODELAY, WASP_SPI_SOCKETS_SOCKOPT_NAME_TCP_NO_DELAY},
        {SOL_SOCKET, SO_LINGER, WASP_SPI_SOCKETS_SOCKOPT_NAME_LINGER},
        {SOL_SOCKET, SO_RCVBUF, WASP_SPI_SOCKETS_SOCKOPT_NAME_RECEIVE_BUFFER},
        {SOL_SOCKET, SO_SNDBUF, WASP_SPI_SOCKETS_SOCKOPT_NAME_SEND_BUFFER},
        {SOL_SOCKET, SO_MAX_MSG_SIZE, WASP_SPI_SOCKETS_SOCKOPT_NAME_MAX_MESSAGE_SIZE},
        {SOL_SOCKET, SO_ERROR, WASP_SPI_SOCKETS_SOCKOPT_NAME_ERROR},
        {SOL_SOCKET, SO_TYPE, WASP_SPI_SOCKETS_SOCKOPT_NAME_SOCKET_TYPE},
        {SOL_SOCKET, SO_ACCEPTCONN, WASP_SPI_SOCKETS_SOCKOPT_NAME_ACCEPT_CONN},
        {SOL_SOCKET, SO_PROTOCOL_INFO, WASP_SPI_SOCKETS_SOCKOPT_NAME_PROTOCOL_INFO},
        {IPPROTO_IP, IP_MULTICAST_TTL, WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_TTL},
        {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_TTL},
        {IPPROTO_IP, IP_MULTICAST_LOOP, WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_LOOP},
        {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_LOOP},
        {SOL_SOCKET, SO_CONNDATA, WASP_SPI_SOCKETS_SOCKOPT_NAME_CONNECT_DATA},
    };
    for (size_t i = 0; i < COUNT(names); i++) {
        if (names[i].level == level && names[i].optname == optname) {
            *out = names[i].wit;
            return 0;
        }
    }
    return WSAENOPROTOOPT;
}

static int opt_out(const void *value, size_t len, char *optval, int *optlen) {
    if (optval == NULL || optlen == NULL || *optlen < 0 || (size_t)*optlen < len) {
        return WSAEFAULT;
    }
    if (len > 0) {
        memcpy(optval, value, len);
    }
    *optlen = (int)len;
    return 0;
}

int WSPGetSockOpt(SOCKET s, int level, int optname, char *optval, int *optlen, int *lpErrno) {
    wasp_spi_sockets_sockopt_name_t name;
    int e = sockopt_name(level, optname, &name);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    wasp_spi_sockets_sockopt_t v;
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_get_sock_opt(s, name, &v, &err)) {
        return fail_wit(lpErrno, err);
    }
    int i = 0;
    switch (v.tag) {
    case WASP_SPI_SOCKETS_SOCKOPT_BROADCAST:
        i = v.val.broadcast;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_OOB_INLINE:
        i = v.val.oob_inline;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_REUSE_ADDRESS:
        i = v.val.reuse_address;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_KEEP_ALIVE:
        i = v.val.keep_alive;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_TCP_NO_DELAY:
        i = v.val.tcp_no_delay;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_RECEIVE_BUFFER:
        i = (int)v.val.receive_buffer;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_SEND_BUFFER:
        i = (int)v.val.send_buffer;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_MAX_MESSAGE_SIZE:
        i = (int)v.val.max_message_size;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_ERROR:
        i = v.val.error.is_some ? wasp_error_from_wit(v.val.error.val) : 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_SOCKET_TYPE:
        i = v.val.socket_type;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_ACCEPT_CONN:
        i = v.val.accept_conn;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_MULTICAST_TTL:
        i = v.val.multicast_ttl;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_MULTICAST_LOOP:
        i = v.val.multicast_loop;
        break;
    default:
        break;
    }
    switch (v.tag) {
    case WASP_SPI_SOCKETS_SOCKOPT_LINGER: {
        LINGER l = {v.val.linger.is_some, v.val.linger.is_some ? v.val.linger.val : 0};
        e = opt_out(&l, sizeof l, optval, optlen);
        break;
    }
    case WASP_SPI_SOCKETS_SOCKOPT_PROTOCOL_INFO: {
        WSAPROTOCOL_INFO info;
        from_wit_protocol_info(&v.val.protocol_info, &info);
        e = opt_out(&info, sizeof info, optval, optlen);
        break;
    }
    case WASP_SPI_SOCKETS_SOCKOPT_CONNECT_DATA:
        e = opt_out(v.val.connect_data.ptr, v.val.connect_data.len, optval, optlen);
        break;
    default:
        e = opt_out(&i, sizeof i, optval, optlen);
        break;
    }
    wasp_spi_sockets_sockopt_free(&v);
    return e != 0 ? fail(lpErrno, e) : 0;
}

int WSPSetSockOpt(SOCKET s, int level, int optname, const char *optval, int optlen,
                  int *lpErrno) {
    wasp_spi_sockets_sockopt_name_t name;
    int e = sockopt_name(level, optname, &name);
    if (e != 0) {
        return fail(lpErrno, e);
    }
    if (optlen < 0 || (optlen > 0 && optval == NULL)) {
        return fail(lpErrno, WSAEFAULT);
    }
    /* The number of the BOOL and int options: an int, or a single byte. */
    uint32_t n = 0;
    if (optlen >= (int)sizeof(int)) {
        memcpy(&n, optval, sizeof n);
    } else if (optlen >= 1) {
        n = (uint8_t)optval[0];
    }
    wasp_spi_sockets_sockopt_t v;
    memset(&v, 0, sizeof v);
    v.tag = name; /* the sockopt cases are in the order of sockopt-name */
    switch (name) {
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_BROADCAST:
        v.val.broadcast = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_OOB_INLINE:
        v.val.oob_inline = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_REUSE_ADDRESS:
        v.val.reuse_address = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_KEEP_ALIVE:
        v.val.keep_alive = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_TCP_NO_DELAY:
        v.val.tcp_no_delay = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_LINGER: {
        LINGER l;
        if (optlen < (int)sizeof l) {
            return fail(lpErrno, WSAEFAULT);
        }
        memcpy(&l, optval, sizeof l);
        v.val.linger.is_some = l.l_onoff != 0;
        v.val.linger.val = l.l_linger;
        break;
    }
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_RECEIVE_BUFFER:
        v.val.receive_buffer = n;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_SEND_BUFFER:
        v.val.send_buffer = n;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_TTL:
        if (n > 255) {
            return fail(lpErrno, WSAEINVAL);
        }
        v.val.multicast_ttl = (uint8_t)n;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_MULTICAST_LOOP:
        v.val.multicast_loop = n != 0;
        break;
    case WASP_SPI_SOCKETS_SOCKOPT_NAME_CONNECT_DATA:
        v.val.connect_data.ptr = (uint8_t *)optval;
        v.val.connect_data.len = (size_t)optlen;
        break;
    default:
        /* Read-only: SO_MAX_MSG_SIZE, SO_ERROR, SO_TYPE, SO_ACCEPTCONN,
         * SO_PROTOCOL_INFO. */
        return fail(lpErrno, WSAENOPROTOOPT);
    }
    if (optlen < 1 && name != WASP_SPI_SOCKETS_SOCKOPT_NAME_CONNECT_DATA) {
        return fail(lpErrno, WSAEFAULT);
    }
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_set_sock_opt(s, &v, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

static int name_common(SOCKET s, SOCKADDR *name, int *namelen, int *lpErrno, int peer) {
    if (name == NULL || namelen == NULL) {
        return fail(lpErrno, WSAEFAULT);
    }
    wasp_spi_types_socket_address_t a;
    wasp_spi_sockets_error_code_t err;
    bool ok = peer ? wasp_spi_sockets_wsp_get_peer_name(s, &a, &err)
                   : wasp_spi_sockets_wsp_get_sock_name(s, &a, &err);
    if (!ok) {
        return fail_wit(lpErrno, err);
    }
    if (from_wit_addr(&a, name, namelen) != 0) {
        return fail(lpErrno, WSAEFAULT);
    }
    return 0;
}

int WSPGetSockName(SOCKET s, SOCKADDR *name, int *namelen, int *lpErrno) {
    return name_common(s, name, namelen, lpErrno, 0);
}

int WSPGetPeerName(SOCKET s, SOCKADDR *name, int *namelen, int *lpErrno) {
    return name_common(s, name, namelen, lpErrno, 1);
}

int WSPAsyncSelect(SOCKET s, wasp_queue *hWnd, unsigned int wMsg, long lEvent, int *lpErrno) {
    uint32_t events;
    if (hWnd == NULL || lEvent < 0 ||
        !to_wit_flags(fd_event_map, COUNT(fd_event_map), (uint32_t)lEvent, &events)) {
        return fail(lpErrno, WSAEINVAL);
    }
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_async_select(s, borrow(hWnd), wMsg,
                                           (wasp_spi_types_fd_events_t)events, &err)) {
        return fail_wit(lpErrno, err);
    }
    return 0;
}

SOCKET WSPJoinLeaf(SOCKET s, const SOCKADDR *name, int namelen, const WSABUF *lpCallerData,
                   WSABUF *lpCalleeData, const QOS *lpSQOS, const QOS *lpGQOS, DWORD dwFlags,
                   int *lpErrno) {
    wasp_spi_types_join_flags_t flags;
    switch (dwFlags) {
    case JL_SENDER_ONLY:
        flags = WASP_SPI_TYPES_JOIN_FLAGS_SENDER_ONLY;
        break;
    case JL_RECEIVER_ONLY:
        flags = WASP_SPI_TYPES_JOIN_FLAGS_RECEIVER_ONLY;
        break;
    case JL_BOTH:
        flags = WASP_SPI_TYPES_JOIN_FLAGS_BOTH;
        break;
    default:
        return fail_socket(lpErrno, WSAEINVAL);
    }
    wasp_spi_types_socket_address_t addr;
    int e = to_wit_addr(name, namelen, &addr);
    if (e != 0) {
        return fail_socket(lpErrno, e);
    }
    plugin_list_u8_t caller;
    if (lpCallerData != NULL) {
        if (lpCallerData->len > 0 && lpCallerData->buf == NULL) {
            return fail_socket(lpErrno, WSAEFAULT);
        }
        caller.ptr = (uint8_t *)lpCallerData->buf;
        caller.len = lpCallerData->len;
    }
    wasp_spi_types_qos_t sqos, gqos;
    if (lpSQOS != NULL && (e = to_wit_qos(lpSQOS, &sqos)) != 0) {
        return fail_socket(lpErrno, e);
    }
    if (lpGQOS != NULL && (e = to_wit_qos(lpGQOS, &gqos)) != 0) {
        return fail_socket(lpErrno, e);
    }
    uint32_t capacity = 0;
    if (lpCalleeData != NULL) {
        if (lpCalleeData->len > 0 && lpCalleeData->buf == NULL) {
            return fail_socket(lpErrno, WSAEFAULT);
        }
        capacity = lpCalleeData->len;
    }
    wasp_spi_sockets_join_result_t res;
    wasp_spi_sockets_error_code_t err;
    if (!wasp_spi_sockets_wsp_join_leaf(s, &addr, lpCallerData ? &caller : NULL, capacity,
                                        lpSQOS ? &sqos : NULL, lpGQOS ? &gqos : NULL, flags, &res,
                                        &err)) {
        return fail_socket(lpErrno, wasp_error_from_wit(err));
    }
    if (lpCalleeData != NULL) {
        size_t n = res.callee_data.len < capacity ? res.callee_data.len : capacity;
        if (n > 0) {
            memcpy(lpCalleeData->buf, res.callee_data.ptr, n);
        }
        lpCalleeData->len = (ULONG)n;
    }
    SOCKET joined = res.socket;
    wasp_spi_sockets_join_result_free(&res);
    return joined;
}

int WSPEnumProtocols(const int *lpiProtocols, WSAPROTOCOL_INFO *lpProtocolBuffer,
                     DWORD *lpdwBufferLength, int *lpErrno) {
    if (lpdwBufferLength == NULL) {
        return fail(lpErrno, WSAEFAULT);
    }
    wasp_spi_sockets_list_protocol_t filter;
    if (lpiProtocols != NULL) {
        size_t n = 0;
        while (lpiProtocols[n] != 0) {
            n++;
        }
        filter.ptr = (int32_t *)lpiProtocols;
        filter.len = n;
    }
    wasp_spi_sockets_list_protocol_info_t list;
    wasp_spi_sockets_wsp_enum_protocols(lpiProtocols ? &filter : NULL, &list);
    size_t need = list.len * sizeof(WSAPROTOCOL_INFO);
    if (lpProtocolBuffer == NULL || *lpdwBufferLength < need) {
        *lpdwBufferLength = (DWORD)need;
        wasp_spi_sockets_list_protocol_info_free(&list);
        return fail(lpErrno, WSAENOBUFS);
    }
    for (size_t i = 0; i < list.len; i++) {
        from_wit_protocol_info(&list.ptr[i], &lpProtocolBuffer[i]);
    }
    int count = (int)list.len;
    wasp_spi_sockets_list_protocol_info_free(&list);
    return count;
}

BOOL WSPGetOverlappedResult(SOCKET s, WSAOVERLAPPED *lpOverlapped, DWORD *lpcbTransfer,
                            BOOL fWait, DWORD *lpdwFlags, int *lpErrno) {
    if (lpOverlapped == NULL) {
        set_error(lpErrno, WSAEFAULT);
        return FALSE;
    }
    wasp_spi_sockets_overlapped_result_t res;
    wasp_spi_sockets_error_code_t err;
    struct pending_recv **p = find_pending(s, lpOverlapped->Token);
    if (!wasp_spi_sockets_wsp_get_overlapped_result(s, lpOverlapped->Token, fWait != 0, &res,
                                                    &err)) {
        if (*p != NULL && err != WASP_SPI_TYPES_ERROR_CODE_WSA_IO_INCOMPLETE) {
            remove_pending(p);
        }
        set_error(lpErrno, wasp_error_from_wit(err));
        return FALSE;
    }
    int e = 0;
    if (*p != NULL) {
        scatter((*p)->bufs, (*p)->count, res.data.ptr, res.data.len);
        if (res.sender.is_some && from_wit_addr(&res.sender.val, (*p)->from, (*p)->fromlen) != 0) {
            e = WSAEFAULT;
        }
        remove_pending(p);
    }
    if (lpcbTransfer != NULL) {
        *lpcbTransfer = res.bytes;
    }
    if (lpdwFlags != NULL) {
        *lpdwFlags = 0;
    }
    wasp_spi_sockets_overlapped_result_free(&res);
    if (e != 0) {
        set_error(lpErrno, e);
        return FALSE;
    }
    return TRUE;
}

size_t wasp_last_denial(char *buf, size_t len) {
    plugin_string_t text;
    if (!wasp_spi_sockets_last_denial(&text)) {
        if (buf != NULL && len > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    size_t full = text.len;
    if (buf != NULL && len > 0) {
        size_t n = full < len - 1 ? full : len - 1;
        memcpy(buf, text.ptr, n);
        buf[n] = '\0';
    }
    plugin_string_free(&text);
    return full;
}

/* ------------------------------------------------------------------------
 * Address strings
 * ---------------------------------------------------------------------- */

/* Parses a decimal number of at most `max`; advances *p. */
static int parse_dec(const char **p, uint32_t max, uint32_t *out) {
    const char *s = *p;
    uint32_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint32_t)(*s - '0');
        if (v > max || ++digits > 10) {
            return 0;
        }
        s++;
    }
    if (digits == 0) {
        return 0;
    }
    *p = s;
    *out = v;
    return 1;
}

/* "a.b.c.d" into four bytes; advances *p. */
static int parse_ipv4(const char **p, uint8_t out[4]) {
    const char *s = *p;
    for (int i = 0; i < 4; i++) {
        uint32_t v;
        if (i > 0 && *s++ != '.') {
            return 0;
        }
        if (!parse_dec(&s, 255, &v)) {
            return 0;
        }
        out[i] = (uint8_t)v;
    }
    *p = s;
    return 1;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* An IPv6 address (RFC 4291 text, "::" and a dotted IPv4 tail allowed)
 * into 16 bytes; advances *p. */
static int parse_ipv6(const char **p, uint8_t out[16]) {
    const char *s = *p;
    uint16_t groups[8];
    int n = 0, gap = -1;
    if (s[0] == ':' && s[1] == ':') {
        gap = 0;
        s += 2;
    }
    while (n < 8) {
        uint8_t v4[4];
        const char *t = s;
        if (n <= 6 && parse_ipv4(&t, v4) && hex_digit(*t) < 0 && *t != ':') {
            groups[n++] = (uint16_t)(v4[0] << 8 | v4[1]);
            groups[n++] = (uint16_t)(v4[2] << 8 | v4[3]);
            s = t;
            break;
        }
        int d, digits = 0;
        uint32_t v = 0;
        while ((d = hex_digit(*s)) >= 0 && digits < 4) {
            v = v * 16 + (uint32_t)d;
            digits++;
            s++;
        }
        if (digits == 0) {
            if (gap == n && n > 0) {
                break; /* "a::" */
            }
            if (gap == 0 && n == 0) {
                break; /* "::" */
            }
            return 0;
        }
        if (hex_digit(*s) >= 0) {
            return 0;
        }
        groups[n++] = (uint16_t)v;
        if (s[0] == ':' && s[1] == ':') {
            if (gap >= 0) {
                return 0;
            }
            gap = n;
            s += 2;
        } else if (s[0] == ':') {
            s++;
            if (hex_digit(*s) < 0) {
                return 0;
            }
        } else {
            break;
        }
    }
    if (gap < 0 && n != 8) {
        return 0;
    }
    if (gap >= 0 && n > 7) {
        return 0;
    }
    uint16_t full[8] = {0};
    int tail = gap < 0 ? 0 : n - gap;
    for (int i = 0; i < n - tail; i++) {
        full[i] = groups[i];
    }
    for (int i = 0; i < tail; i++) {
        full[8 - tail + i] = groups[n - tail + i];
    }
    for (int i = 0; i < 8; i++) {
        out[2 * i] = (uint8_t)(full[i] >> 8);
        out[2 * i + 1] = (uint8_t)full[i];
    }
    *p = s;
    return 1;
}

static int string_to_v4(const char *s, SOCKADDR_IN *in) {
    uint8_t b[4];
    uint32_t port = 0;
    if (!parse_ipv4(&s, b)) {
        return 0;
    }
    if (*s == ':') {
        s++;
        if (!parse_dec(&s, 65535, &port)) {
            return 0;
        }
    }
    if (*s != '\0') {
        return 0;
    }
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    memcpy(&in->sin_addr.s_addr, b, 4);
    return 1;
}

static int string_to_v6(const char *s, SOCKADDR_IN6 *in6) {
    int bracket = *s == '[';
    uint32_t port = 0, scope = 0;
    memset(in6, 0, sizeof *in6);
    if (bracket) {
        s++;
    }
    if (!parse_ipv6(&s, in6->sin6_addr.s6_addr)) {
        return 0;
    }
    if (*s == '%') {
        s++;
        if (!parse_dec(&s, UINT32_MAX, &scope)) {
            return 0;
        }
    }
    if (bracket) {
        if (*s++ != ']') {
            return 0;
        }
        if (*s == ':') {
            s++;
            if (!parse_dec(&s, 65535, &port)) {
                return 0;
            }
        }
    }
    if (*s != '\0') {
        return 0;
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    in6->sin6_scope_id = scope;
    return 1;
}

int WSPStringToAddress(const char *AddressString, int AddressFamily,
                       const WSAPROTOCOL_INFO *lpProtocolInfo, SOCKADDR *lpAddress,
                       int *lpAddressLength, int *lpErrno) {
    (void)lpProtocolInfo;
    if (AddressString == NULL || lpAddress == NULL || lpAddressLength == NULL) {
        return fail(lpErrno, WSAEFAULT);
    }
    SOCKADDR_IN in;
    SOCKADDR_IN6 in6;
    const void *addr;
    int len;
    if ((AddressFamily == AF_INET || AddressFamily == AF_UNSPEC) &&
        string_to_v4(AddressString, &in)) {
        addr = &in;
        len = (int)sizeof in;
    } else if ((AddressFamily == AF_INET6 || AddressFamily == AF_UNSPEC) &&
               string_to_v6(AddressString, &in6)) {
        addr = &in6;
        len = (int)sizeof in6;
    } else if (AddressFamily != AF_INET && AddressFamily != AF_INET6 &&
               AddressFamily != AF_UNSPEC) {
        return fail(lpErrno, WSAEAFNOSUPPORT);
    } else {
        return fail(lpErrno, WSAEINVAL);
    }
    if (*lpAddressLength < len) {
        *lpAddressLength = len;
        return fail(lpErrno, WSAEFAULT);
    }
    memcpy(lpAddress, addr, (size_t)len);
    *lpAddressLength = len;
    return 0;
}

/* Appends to a bounded text buffer. */
struct text {
    char buf[INET6_ADDRSTRLEN + 8];
    size_t len;
};

static void put_char(struct text *t, char c) {
    if (t->len + 1 < sizeof t->buf) {
        t->buf[t->len++] = c;
        t->buf[t->len] = '\0';
    }
}

static void put_dec(struct text *t, uint32_t v) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0) {
        put_char(t, digits[--n]);
    }
}

static void put_hex(struct text *t, uint32_t v) {
    char digits[8];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % 16];
        v /= 16;
    } while (v > 0);
    while (n > 0) {
        put_char(t, digits[--n]);
    }
}

static void put_ipv4(struct text *t, const uint8_t b[4]) {
    for (int i = 0; i < 4; i++) {
        if (i > 0) {
            put_char(t, '.');
        }
        put_dec(t, b[i]);
    }
}

/* RFC 5952 text of an IPv6 address. */
static void put_ipv6(struct text *t, const uint8_t b[16]) {
    uint16_t g[8];
    for (int i = 0; i < 8; i++) {
        g[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
    }
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0) {
            j++;
        }
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j > i ? j : i + 1;
    }
    /* IPv4-mapped (::ffff:a.b.c.d). */
    int mapped = g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 && g[5] == 0xffff;
    int end = mapped ? 6 : 8;
    if (mapped) {
        best = 0;
        best_len = 5;
    }
    for (int i = 0; i < end; i++) {
        if (i == best) {
            put_char(t, ':');
            put_char(t, ':');
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len) {
            put_char(t, ':');
        }
        put_hex(t, g[i]);
    }
    if (mapped) {
        put_char(t, ':');
        put_ipv4(t, b + 12);
    }
}

int WSPAddressToString(const SOCKADDR *lpsaAddress, DWORD dwAddressLength,
                       const WSAPROTOCOL_INFO *lpProtocolInfo, char *lpszAddressString,
                       DWORD *lpdwAddressStringLength, int *lpErrno) {
    (void)lpProtocolInfo;
    if (lpsaAddress == NULL || lpdwAddressStringLength == NULL ||
        dwAddressLength < sizeof(ADDRESS_FAMILY)) {
        return fail(lpErrno, WSAEFAULT);
    }
    struct text t = {{0}, 0};
    if (lpsaAddress->sa_family == AF_INET) {
        SOCKADDR_IN in;
        if (dwAddressLength < sizeof in) {
            return fail(lpErrno, WSAEFAULT);
        }
        memcpy(&in, lpsaAddress, sizeof in);
        put_ipv4(&t, (const uint8_t *)&in.sin_addr.s_addr);
        if (in.sin_port != 0) {
            put_char(&t, ':');
            put_dec(&t, ntohs(in.sin_port));
        }
    } else if (lpsaAddress->sa_family == AF_INET6) {
        SOCKADDR_IN6 in6;
        if (dwAddressLength < sizeof in6) {
            return fail(lpErrno, WSAEFAULT);
        }
        memcpy(&in6, lpsaAddress, sizeof in6);
        if (in6.sin6_port != 0) {
            put_char(&t, '[');
        }
        put_ipv6(&t, in6.sin6_addr.s6_addr);
        if (in6.sin6_scope_id != 0) {
            put_char(&t, '%');
            put_dec(&t, in6.sin6_scope_id);
        }
        if (in6.sin6_port != 0) {
            put_char(&t, ']');
            put_char(&t, ':');
            put_dec(&t, ntohs(in6.sin6_port));
        }
    } else {
        return fail(lpErrno, WSAEAFNOSUPPORT);
    }
    DWORD need = (DWORD)t.len + 1;
    if (lpszAddressString == NULL || *lpdwAddressStringLength < need) {
        *lpdwAddressStringLength = need;
        return fail(lpErrno, WSAEFAULT);
    }
    memcpy(lpszAddressString, t.buf, need);
    *lpdwAddressStringLength = need;
    return 0;
}
