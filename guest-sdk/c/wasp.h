/*
 * wasp.h: the wasp C SDK, the Winsock service-provider interface (SPI) of
 * the wasp host for C plugins built with clang for wasm32-wasi.
 *
 * A wasp plugin is a WASI command: a normal `int main(int argc, char **argv)`
 * compiled for wasm32-wasi and linked into a component with the WASI
 * command adapter (see Makefile / wasp.mk). It reaches the network only
 * through the calls below, each the C form of one WSP call of the WIT
 * package wasp:spi@0.1.0 (wit/sockets.wit). The generated bindings
 * (bindings/plugin.h, included here) stay available for code that wants
 * the WIT as it is.
 *
 * Conventions (the SPI's, ws2spi.h):
 *
 * - Every WSP call takes `int *lpErrno` last. On failure it returns
 *   SOCKET_ERROR (or INVALID_SOCKET, or FALSE for
 *   WSPGetOverlappedResult) and stores the Winsock error number
 *   (WSAEWOULDBLOCK = 10035, ...) in *lpErrno; on success *lpErrno is left
 *   alone. lpErrno may be NULL; the error of the most recent failed call is
 *   also kept for WSAGetLastError().
 * - Names and numbers are Winsock's: AF_INET = 2, AF_INET6 = 23,
 *   FD_READ = 0x01, MSG_WAITALL = 0x8, WSAEACCES = 10013, FIONBIO =
 *   0x8004667E. The SDK converts them to and from the WIT forms (enum
 *   ordinals, flag bit positions); the WASI libc's own socket headers use
 *   other numbers, so do not include <sys/socket.h>, <netinet/in.h> or
 *   <arpa/inet.h> in a file that includes wasp.h.
 * - Signatures follow the SPI, without the parameters wasp does not model
 *   (condition callbacks, completion routines, thread ids, catalogue
 *   upcalls); strings are `char`, not wide.
 * - Addresses are Winsock's SOCKADDR_IN / SOCKADDR_IN6 (port and IPv4
 *   address in network byte order) with a length, as in the SPI.
 * - The window (HWND) of WSPAsyncSelect is a guest-owned message queue,
 *   `wasp_queue`; the guest takes its messages with wasp_queue_get(), the
 *   host never calls into the guest (SPEC mapping of WPUPostMessage).
 * - A capability the policy does not grant is WSAEACCES, and
 *   wasp_last_denial() names the missing grant.
 *
 * "SPEC XX-n" cites the numbered rules of the project's SPEC.md.
 */
#ifndef WASP_H
#define WASP_H

#if defined(__wasilibc___header_sys_socket_h) || defined(_SYS_SOCKET_H) || \
    defined(_NETINET_IN_H) || defined(_ARPA_INET_H)
#error "wasp.h defines the Winsock names and numbers; do not mix it with the WASI libc socket headers"
#endif

#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Basic types
 * ---------------------------------------------------------------------- */

/** A socket descriptor: a handle in this guest's socket table, never
 *  reused within one guest instance (SPEC mapping of SOCKET). */
typedef uint32_t SOCKET;
/** Winsock DWORD: an unsigned 32-bit value. */
typedef uint32_t DWORD;
/** Winsock ULONG (the length of a WSABUF, the values of a FLOWSPEC). */
typedef uint32_t ULONG;
/** Winsock BOOL: 0 is FALSE, anything else TRUE. */
typedef int BOOL;
/** Socket group of WSPSocket (reserved: only 0 is valid, SPEC SO-2). */
typedef unsigned int GROUP;
/** The address family field of a socket address (AF_*). */
typedef uint16_t ADDRESS_FAMILY;

/** The descriptor returned by WSPSocket, WSPAccept and WSPJoinLeaf on
 *  failure. */
#define INVALID_SOCKET ((SOCKET)~(SOCKET)0)
/** What the other WSP calls return on failure. */
#define SOCKET_ERROR (-1)
#ifndef FALSE
/** BOOL false. */
#define FALSE 0
#endif
#ifndef TRUE
/** BOOL true. */
#define TRUE 1
#endif

/* ------------------------------------------------------------------------
 * WSPSocket arguments (SPEC SO-1..SO-9)
 * ---------------------------------------------------------------------- */

/** Wildcard address family (resolved from the catalogue, SPEC SO-4). */
#define AF_UNSPEC 0
/** IPv4. */
#define AF_INET 2
/** IPv6 (the Winsock value). */
#define AF_INET6 23
/** Stream sockets. */
#define SOCK_STREAM 1
/** Datagram sockets. */
#define SOCK_DGRAM 2
/** Raw sockets: not offered by wasp (WSAESOCKTNOSUPPORT, SPEC SO-8). */
#define SOCK_RAW 3
/** Reliably delivered messages: not offered by wasp. */
#define SOCK_RDM 4
/** Sequenced packets: not offered by wasp. */
#define SOCK_SEQPACKET 5
/** The IP level of WSPGetSockOpt / WSPSetSockOpt; wildcard protocol of
 *  WSPSocket. */
#define IPPROTO_IP 0
/** TCP. */
#define IPPROTO_TCP 6
/** UDP. */
#define IPPROTO_UDP 17
/** The IPv6 level of WSPGetSockOpt / WSPSetSockOpt. */
#define IPPROTO_IPV6 41
/** wasp's rooted multipoint protocol over TCP (c_root/d_root sockets,
 *  SPEC JL-4). */
#define IPPROTO_WASP_ROOTED 253
/** af, type or protocol of WSPSocket: take the value from the
 *  WSAPROTOCOL_INFO argument (SPEC SO-4). */
#define FROM_PROTOCOL_INFO (-1)

/** dwFlags of WSPSocket: the socket accepts overlapped sends and receives
 *  (SPEC SO-3, SE-7). */
#define WSA_FLAG_OVERLAPPED 0x01
/** dwFlags of WSPSocket: multipoint control plane root (SPEC SO-5). */
#define WSA_FLAG_MULTIPOINT_C_ROOT 0x02
/** dwFlags of WSPSocket: multipoint control plane leaf (SPEC SO-5). */
#define WSA_FLAG_MULTIPOINT_C_LEAF 0x04
/** dwFlags of WSPSocket: multipoint data plane root (SPEC SO-5). */
#define WSA_FLAG_MULTIPOINT_D_ROOT 0x08
/** dwFlags of WSPSocket: multipoint data plane leaf (SPEC SO-5). */
#define WSA_FLAG_MULTIPOINT_D_LEAF 0x10
/** dwFlags of WSPSocket: accepted and ignored (there is nothing to
 *  inherit in a guest). Other flags are WSAEINVAL. */
#define WSA_FLAG_NO_HANDLE_INHERIT 0x80

/* XP1_* service flags of WSAPROTOCOL_INFO.dwServiceFlags1 (SPEC SO-9). */
/** XP1_CONNECTIONLESS. */
#define XP1_CONNECTIONLESS 0x00000001
/** XP1_GUARANTEED_DELIVERY. */
#define XP1_GUARANTEED_DELIVERY 0x00000002
/** XP1_GUARANTEED_ORDER. */
#define XP1_GUARANTEED_ORDER 0x00000004
/** XP1_MESSAGE_ORIENTED. */
#define XP1_MESSAGE_ORIENTED 0x00000008
/** XP1_GRACEFUL_CLOSE. */
#define XP1_GRACEFUL_CLOSE 0x00000020
/** XP1_EXPEDITED_DATA (out-of-band data). */
#define XP1_EXPEDITED_DATA 0x00000040
/** XP1_CONNECT_DATA (caller/callee data on connect or join). */
#define XP1_CONNECT_DATA 0x00000080
/** XP1_SUPPORT_BROADCAST. */
#define XP1_SUPPORT_BROADCAST 0x00000200
/** XP1_SUPPORT_MULTIPOINT. */
#define XP1_SUPPORT_MULTIPOINT 0x00000400
/** XP1_MULTIPOINT_CONTROL_PLANE: the control plane is rooted. */
#define XP1_MULTIPOINT_CONTROL_PLANE 0x00000800
/** XP1_MULTIPOINT_DATA_PLANE: the data plane is rooted. */
#define XP1_MULTIPOINT_DATA_PLANE 0x00001000
/** XP1_QOS_SUPPORTED. */
#define XP1_QOS_SUPPORTED 0x00002000
/** XP1_PARTIAL_MESSAGE. */
#define XP1_PARTIAL_MESSAGE 0x00040000

/** Longest protocol name of a WSAPROTOCOL_INFO, without its NUL. */
#define WSAPROTOCOL_LEN 255

/** One entry of the host's protocol catalogue (the fields of Winsock's
 *  WSAPROTOCOL_INFO that wasp defines; SPEC SO-9). Returned by
 *  WSPEnumProtocols and SO_PROTOCOL_INFO, accepted back by WSPSocket. */
typedef struct WSAPROTOCOL_INFO {
    /** XP1_* service flags. */
    DWORD dwServiceFlags1;
    /** Catalogue entry identifier, unique within the host. */
    DWORD dwCatalogEntryId;
    /** Address family (AF_*). */
    int iAddressFamily;
    /** Socket type (SOCK_*). */
    int iSocketType;
    /** Protocol (IPPROTO_*). */
    int iProtocol;
    /** Largest message in bytes (0 for stream protocols). */
    DWORD dwMessageSize;
    /** Human-readable name, NUL-terminated. */
    char szProtocol[WSAPROTOCOL_LEN + 1];
} WSAPROTOCOL_INFO;

/* ------------------------------------------------------------------------
 * Socket addresses (Winsock layout; port and IPv4 address in network byte
 * order)
 * ---------------------------------------------------------------------- */

/** An IPv4 address (`in_addr`), network byte order. */
typedef struct wasp_in_addr {
    /** The address, network byte order (htonl(INADDR_LOOPBACK)). */
    uint32_t s_addr;
} IN_ADDR;

/** An IPv6 address (`in6_addr`): 16 bytes, most significant first. */
typedef struct wasp_in6_addr {
    /** The bytes of the address. */
    uint8_t s6_addr[16];
} IN6_ADDR;

/** A generic socket address (`sockaddr`). */
typedef struct wasp_sockaddr {
    /** AF_INET or AF_INET6. */
    ADDRESS_FAMILY sa_family;
    /** The family's fields. */
    char sa_data[14];
} SOCKADDR;

/** An IPv4 socket address (`sockaddr_in`, 16 bytes). */
typedef struct wasp_sockaddr_in {
    /** AF_INET. */
    ADDRESS_FAMILY sin_family;
    /** Port, network byte order (htons(7000)). */
    uint16_t sin_port;
    /** Address, network byte order. */
    IN_ADDR sin_addr;
    /** Padding, zero. */
    char sin_zero[8];
} SOCKADDR_IN;

/** An IPv6 socket address (`sockaddr_in6`, 28 bytes). */
typedef struct wasp_sockaddr_in6 {
    /** AF_INET6. */
    ADDRESS_FAMILY sin6_family;
    /** Port, network byte order. */
    uint16_t sin6_port;
    /** Flow information, network byte order. */
    uint32_t sin6_flowinfo;
    /** Address. */
    IN6_ADDR sin6_addr;
    /** Scope (interface) identifier, host byte order. */
    uint32_t sin6_scope_id;
} SOCKADDR_IN6;

/** Room for a socket address of any family (`sockaddr_storage`). */
typedef struct wasp_sockaddr_storage {
    /** AF_INET or AF_INET6. */
    ADDRESS_FAMILY ss_family;
    /** Padding. */
    char __ss_pad1[6];
    /** Alignment. */
    int64_t __ss_align;
    /** Padding. */
    char __ss_pad2[112];
} SOCKADDR_STORAGE;

/** The IPv4 wildcard address (host byte order, give it to htonl). */
#define INADDR_ANY ((uint32_t)0x00000000)
/** 127.0.0.1 (host byte order, give it to htonl). */
#define INADDR_LOOPBACK ((uint32_t)0x7f000001)
/** 255.255.255.255 (host byte order). */
#define INADDR_BROADCAST ((uint32_t)0xffffffff)
/** Longest text WSPAddressToString writes for IPv4, NUL included. */
#define INET_ADDRSTRLEN 22
/** Longest text WSPAddressToString writes for IPv6, NUL included. */
#define INET6_ADDRSTRLEN 65

/** Host to network byte order, 16 bits. */
static inline uint16_t htons(uint16_t x) { return (uint16_t)((x << 8) | (x >> 8)); }
/** Network to host byte order, 16 bits. */
static inline uint16_t ntohs(uint16_t x) { return htons(x); }
/** Host to network byte order, 32 bits. */
static inline uint32_t htonl(uint32_t x) {
    return (x << 24) | ((x & 0xff00u) << 8) | ((x >> 8) & 0xff00u) | (x >> 24);
}
/** Network to host byte order, 32 bits. */
static inline uint32_t ntohl(uint32_t x) { return htonl(x); }

/* ------------------------------------------------------------------------
 * Buffers, overlapped operations and quality of service
 * ---------------------------------------------------------------------- */

/** One buffer of a scatter/gather send or receive (`WSABUF`, SPEC SE-1). */
typedef struct WSABUF {
    /** Length of the buffer in bytes. */
    ULONG len;
    /** The buffer. */
    char *buf;
} WSABUF;

/** A guest-owned message queue: the window (HWND) of WSPAsyncSelect and
 *  the target of overlapped completions (SPEC AS-1, SE-7). */
typedef struct wasp_queue wasp_queue;

/** The overlapped argument of a send or receive (`WSAOVERLAPPED` and its
 *  completion routine, SPEC SE-7): the completion is posted to `hQueue`
 *  as a message with id `wMsg`, its `Token` and byte count in the
 *  message. The structure (and, for a receive, its buffers) must stay
 *  valid until WSPGetOverlappedResult reports the outcome. */
typedef struct WSAOVERLAPPED {
    /** The guest's name for the operation, unique among the socket's
     *  pending operations. */
    uint64_t Token;
    /** Where the completion is posted; must be open (else WSAEINVAL). */
    wasp_queue *hQueue;
    /** Message id of the completion message. */
    uint32_t wMsg;
} WSAOVERLAPPED;

/** Service type of a FLOWSPEC (`SERVICETYPE`). */
typedef ULONG SERVICETYPE;
/** SERVICETYPE_NOTRAFFIC: no traffic in this direction. */
#define SERVICETYPE_NOTRAFFIC 0x00000000
/** SERVICETYPE_BESTEFFORT. */
#define SERVICETYPE_BESTEFFORT 0x00000001
/** SERVICETYPE_CONTROLLEDLOAD: shapes sends to the token rate (SPEC JL-8). */
#define SERVICETYPE_CONTROLLEDLOAD 0x00000002
/** SERVICETYPE_GUARANTEED: cannot be met by wasp (WSAEOPNOTSUPP). */
#define SERVICETYPE_GUARANTEED 0x00000003
/** SERVICETYPE_NOCHANGE: not specified (WIT `not-specified`). */
#define SERVICETYPE_NOCHANGE 0x00000006
/** A FLOWSPEC value left unspecified. */
#define QOS_NOT_SPECIFIED 0xFFFFFFFFu

/** A flow specification for one direction (`FLOWSPEC`). */
typedef struct FLOWSPEC {
    /** Bytes per second. */
    ULONG TokenRate;
    /** Bytes. */
    ULONG TokenBucketSize;
    /** Bytes per second. */
    ULONG PeakBandwidth;
    /** Microseconds. */
    ULONG Latency;
    /** Microseconds. */
    ULONG DelayVariation;
    /** SERVICETYPE_*. */
    SERVICETYPE ServiceType;
    /** Bytes. */
    ULONG MaxSduSize;
    /** Bytes. */
    ULONG MinimumPolicedSize;
} FLOWSPEC;

/** Quality of service (`QOS`) of SIO_SET_QOS, SIO_GET_QOS and
 *  WSPJoinLeaf (SPEC JL-8). */
typedef struct QOS {
    /** The sending direction. */
    FLOWSPEC SendingFlowspec;
    /** The receiving direction. */
    FLOWSPEC ReceivingFlowspec;
    /** Provider-specific bytes (wasp defines none). */
    WSABUF ProviderSpecific;
} QOS;

/* ------------------------------------------------------------------------
 * Send and receive flags (MSG_*, SPEC SE-5)
 * ---------------------------------------------------------------------- */

/** MSG_OOB: urgent (out-of-band) data, stream sockets only. */
#define MSG_OOB 0x1
/** MSG_PEEK: receive without removing the data. */
#define MSG_PEEK 0x2
/** MSG_DONTROUTE: accepted and ignored. */
#define MSG_DONTROUTE 0x4
/** MSG_WAITALL: a blocking stream receive waits for the full length. */
#define MSG_WAITALL 0x8
/** MSG_PARTIAL: unsupported (WSAEOPNOTSUPP). Other flags are
 *  WSAEOPNOTSUPP too. */
#define MSG_PARTIAL 0x8000

/** `how` of WSPShutdown: no more receives. */
#define SD_RECEIVE 0
/** `how` of WSPShutdown: no more sends. */
#define SD_SEND 1
/** `how` of WSPShutdown: neither. */
#define SD_BOTH 2

/* ------------------------------------------------------------------------
 * WSPAsyncSelect events (FD_*, SPEC AS-2) and the lParam of a message
 * ---------------------------------------------------------------------- */

/** FD_READ: data to read (level-triggered, re-enabled by a receive). */
#define FD_READ 0x01
/** FD_WRITE: room to send (after connect/accept, then after a
 *  WSAEWOULDBLOCK send once room is back, SPEC AS-15). */
#define FD_WRITE 0x02
/** FD_OOB: urgent data (level-triggered, re-enabled by a receive). */
#define FD_OOB 0x04
/** FD_ACCEPT: a connection to accept (level-triggered). */
#define FD_ACCEPT 0x08
/** FD_CONNECT: a connect or join this socket initiated finished (once,
 *  SPEC AS-20). */
#define FD_CONNECT 0x10
/** FD_CLOSE: the connection closed (once, after all data is read,
 *  SPEC AS-17, AS-18). */
#define FD_CLOSE 0x20
/** FD_QOS: the quality of service changed (SPEC AS-24). */
#define FD_QOS 0x40
/** FD_GROUP_QOS: reserved. */
#define FD_GROUP_QOS 0x80
/** FD_ROUTING_INTERFACE_CHANGE (armed by its ioctl, SPEC AS-13). */
#define FD_ROUTING_INTERFACE_CHANGE 0x100
/** FD_ADDRESS_LIST_CHANGE (armed by its ioctl, SPEC AS-13). */
#define FD_ADDRESS_LIST_CHANGE 0x200
/** Every event. */
#define FD_ALL_EVENTS 0x3FF
/** Bit position of FD_READ. */
#define FD_READ_BIT 0
/** Bit position of FD_WRITE. */
#define FD_WRITE_BIT 1
/** Bit position of FD_OOB. */
#define FD_OOB_BIT 2
/** Bit position of FD_ACCEPT. */
#define FD_ACCEPT_BIT 3
/** Bit position of FD_CONNECT. */
#define FD_CONNECT_BIT 4
/** Bit position of FD_CLOSE. */
#define FD_CLOSE_BIT 5
/** Bit position of FD_QOS. */
#define FD_QOS_BIT 6
/** Bit position of FD_GROUP_QOS. */
#define FD_GROUP_QOS_BIT 7
/** Bit position of FD_ROUTING_INTERFACE_CHANGE. */
#define FD_ROUTING_INTERFACE_CHANGE_BIT 8
/** Bit position of FD_ADDRESS_LIST_CHANGE. */
#define FD_ADDRESS_LIST_CHANGE_BIT 9
/** Number of FD_* events. */
#define FD_MAX_EVENTS 10

/** The FD_* event of a message's lParam (its low word). */
#define WSAGETSELECTEVENT(lParam) ((uint32_t)(lParam) & 0xFFFFu)
/** The Winsock error of a message's lParam (its high word), 0 for none. */
#define WSAGETSELECTERROR(lParam) (((uint32_t)(lParam) >> 16) & 0xFFFFu)
/** Packs an lParam: `error << 16 | event`. */
#define WSAMAKESELECTREPLY(event, error) \
    ((uint32_t)(((uint32_t)(error) << 16) | ((uint32_t)(event) & 0xFFFFu)))

/* ------------------------------------------------------------------------
 * WSPJoinLeaf flags (SPEC JL-2)
 * ---------------------------------------------------------------------- */

/** JL_SENDER_ONLY: may send to the session, receives nothing from it. */
#define JL_SENDER_ONLY 0x01
/** JL_RECEIVER_ONLY: receives from the session, may not send to it. */
#define JL_RECEIVER_ONLY 0x02
/** JL_BOTH: sends and receives. */
#define JL_BOTH 0x04

/* ------------------------------------------------------------------------
 * WSPIoctl control codes (Winsock values)
 * ---------------------------------------------------------------------- */

/** FIONBIO: in a u_long (DWORD), nonzero makes the socket non-blocking,
 *  0 blocking (WSAEINVAL while registered with WSPAsyncSelect). */
#define FIONBIO ((DWORD)0x8004667Eu)
/** FIONREAD: out a u_long (DWORD), the bytes one receive returns at once. */
#define FIONREAD ((DWORD)0x4004667Fu)
/** SIOCATMARK: out a BOOL (DWORD), TRUE when no OOB data is pending. */
#define SIOCATMARK ((DWORD)0x40047307u)
/** SIO_FLUSH: discards the pending overlapped sends (they complete with
 *  WSA_OPERATION_ABORTED, SPEC SE-6). */
#define SIO_FLUSH ((DWORD)0x28000004u)
/** SIO_SET_QOS: in a QOS (SPEC JL-8). */
#define SIO_SET_QOS ((DWORD)0x8800000Bu)
/** SIO_GET_QOS: out a QOS, its provider-specific bytes after it in the
 *  out buffer; re-enables FD_QOS (SPEC AS-24). */
#define SIO_GET_QOS ((DWORD)0xC800000Cu)
/** SIO_ROUTING_INTERFACE_CHANGE: in a destination SOCKADDR; arms
 *  FD_ROUTING_INTERFACE_CHANGE (SPEC AS-13, AS-25, AS-26). */
#define SIO_ROUTING_INTERFACE_CHANGE ((DWORD)0x88000015u)
/** SIO_ADDRESS_LIST_CHANGE: arms FD_ADDRESS_LIST_CHANGE (SPEC AS-13,
 *  AS-25). */
#define SIO_ADDRESS_LIST_CHANGE ((DWORD)0x28000017u)

/* ------------------------------------------------------------------------
 * Socket options (levels and names as in Winsock)
 * ---------------------------------------------------------------------- */

/** The socket level of WSPGetSockOpt / WSPSetSockOpt. */
#define SOL_SOCKET 0xffff
/** SO_ACCEPTCONN (BOOL, read-only): whether the socket is listening. */
#define SO_ACCEPTCONN 0x0002
/** SO_REUSEADDR (BOOL). */
#define SO_REUSEADDR 0x0004
/** SO_KEEPALIVE (BOOL). */
#define SO_KEEPALIVE 0x0008
/** SO_BROADCAST (BOOL): allow sending to broadcast addresses. */
#define SO_BROADCAST 0x0020
/** SO_LINGER (LINGER): l_onoff 0 closes gracefully in the background. */
#define SO_LINGER 0x0080
/** SO_OOBINLINE (BOOL): urgent data in the normal stream. */
#define SO_OOBINLINE 0x0100
/** SO_SNDBUF (int, bytes). */
#define SO_SNDBUF 0x1001
/** SO_RCVBUF (int, bytes). */
#define SO_RCVBUF 0x1002
/** SO_ERROR (int, read-only): the pending Winsock error, cleared by
 *  reading it. */
#define SO_ERROR 0x1007
/** SO_TYPE (int, read-only): SOCK_*. */
#define SO_TYPE 0x1008
/** SO_MAX_MSG_SIZE (unsigned int, read-only): largest datagram, 0 for
 *  streams. */
#define SO_MAX_MSG_SIZE 0x2003
/** SO_PROTOCOL_INFO (WSAPROTOCOL_INFO, read-only). */
#define SO_PROTOCOL_INFO 0x2004
/** SO_CONNDATA (bytes, rooted multipoint sockets, SPEC JL-7). */
#define SO_CONNDATA 0x7000
/** TCP_NODELAY (BOOL) at level IPPROTO_TCP. */
#define TCP_NODELAY 0x0001
/** IP_MULTICAST_TTL (DWORD) at level IPPROTO_IP: at most the policy's
 *  ceiling for the group (WSAEACCES above it). */
#define IP_MULTICAST_TTL 10
/** IP_MULTICAST_LOOP (DWORD, boolean) at level IPPROTO_IP. */
#define IP_MULTICAST_LOOP 11
/** IPV6_MULTICAST_HOPS (DWORD) at level IPPROTO_IPV6. */
#define IPV6_MULTICAST_HOPS 10
/** IPV6_MULTICAST_LOOP (DWORD, boolean) at level IPPROTO_IPV6. */
#define IPV6_MULTICAST_LOOP 11

/** The value of SO_LINGER (`linger`). */
typedef struct wasp_linger {
    /** Nonzero: linger on close. */
    uint16_t l_onoff;
    /** Seconds to linger. */
    uint16_t l_linger;
} LINGER;

/* ------------------------------------------------------------------------
 * Winsock error numbers (every case of the WIT error-code enum)
 * ---------------------------------------------------------------------- */

/** No error. */
#define NO_ERROR 0
/** An overlapped token that names no operation. */
#define WSA_INVALID_HANDLE 6
/** An overlapped operation was cancelled (close, SIO_FLUSH). */
#define WSA_OPERATION_ABORTED 995
/** The overlapped operation has not completed. */
#define WSA_IO_INCOMPLETE 996
/** The overlapped operation completes later (SPEC SE-7). */
#define WSA_IO_PENDING 997
/** A blocking call was interrupted. */
#define WSAEINTR 10004
/** Permission denied: the capability policy does not grant this use, or
 *  a broadcast send without SO_BROADCAST (see wasp_last_denial()). */
#define WSAEACCES 10013
/** An argument does not fit (buffer too small, data too large). */
#define WSAEFAULT 10014
/** An invalid argument or socket state. */
#define WSAEINVAL 10022
/** No more descriptors (the guest's socket quota). */
#define WSAEMFILE 10024
/** A non-blocking call cannot complete now. */
#define WSAEWOULDBLOCK 10035
/** A blocking operation is in progress. */
#define WSAEINPROGRESS 10036
/** An operation is already in progress. */
#define WSAEALREADY 10037
/** The descriptor is not a socket. */
#define WSAENOTSOCK 10038
/** A destination address is required. */
#define WSAEDESTADDRREQ 10039
/** The datagram is larger than SO_MAX_MSG_SIZE or the receive buffer. */
#define WSAEMSGSIZE 10040
/** The protocol is of the wrong type for the socket type. */
#define WSAEPROTOTYPE 10041
/** Unknown or unsupported socket option. */
#define WSAENOPROTOOPT 10042
/** The protocol is not supported. */
#define WSAEPROTONOSUPPORT 10043
/** The socket type is not supported in this address family. */
#define WSAESOCKTNOSUPPORT 10044
/** The operation is not supported on this socket. */
#define WSAEOPNOTSUPP 10045
/** The protocol family is not supported. */
#define WSAEPFNOSUPPORT 10046
/** The address family is not supported. */
#define WSAEAFNOSUPPORT 10047
/** The address is already in use. */
#define WSAEADDRINUSE 10048
/** The address is not valid here. */
#define WSAEADDRNOTAVAIL 10049
/** The network subsystem failed. */
#define WSAENETDOWN 10050
/** The network is unreachable. */
#define WSAENETUNREACH 10051
/** The connection was reset by keep-alive. */
#define WSAENETRESET 10052
/** The connection was aborted locally. */
#define WSAECONNABORTED 10053
/** The connection was reset by the peer. */
#define WSAECONNRESET 10054
/** No buffer space is available. */
#define WSAENOBUFS 10055
/** The socket is already connected. */
#define WSAEISCONN 10056
/** The socket is not connected. */
#define WSAENOTCONN 10057
/** The socket has been shut down in that direction. */
#define WSAESHUTDOWN 10058
/** The operation timed out. */
#define WSAETIMEDOUT 10060
/** The peer refused the connection. */
#define WSAECONNREFUSED 10061
/** The host is unreachable. */
#define WSAEHOSTUNREACH 10065

/** The Winsock error of the most recent failed wasp call (the mirror of
 *  its *lpErrno), 0 if none failed yet. */
int WSAGetLastError(void);
/** Sets the value WSAGetLastError() returns. */
void WSASetLastError(int iError);
/** The upper-case Winsock name of an error number ("WSAEACCES" for
 *  10013, "NO_ERROR" for 0, "UNKNOWN" otherwise); a static string. */
const char *wasp_error_name(int code);
/** The Winsock number of a WIT error-code ordinal (the mapping of the
 *  Rust SDK's WsaError::code), -1 for an ordinal out of range. */
int wasp_error_from_wit(wasp_spi_types_error_code_t code);

/* ------------------------------------------------------------------------
 * The WSP calls (wit/sockets.wit)
 * ---------------------------------------------------------------------- */

/** WSPSocket (SPEC SO-1..SO-9): creates a socket. `af`, `type` and
 *  `protocol` take Winsock constants, 0 a wildcard, FROM_PROTOCOL_INFO the
 *  value of *lpProtocolInfo (NULL for none); `g` must be 0; dwFlags are
 *  WSA_FLAG_*. Returns the descriptor, or INVALID_SOCKET (WSAEAFNOSUPPORT,
 *  WSAESOCKTNOSUPPORT, WSAEPROTONOSUPPORT, WSAEPROTOTYPE, WSAEINVAL,
 *  WSAEMFILE, WSAEACCES). */
SOCKET WSPSocket(int af, int type, int protocol, const WSAPROTOCOL_INFO *lpProtocolInfo,
                 GROUP g, DWORD dwFlags, int *lpErrno);

/** WSPBind: binds `s` to the local address `name` (policy `bind` grant).
 *  Returns 0 or SOCKET_ERROR. */
int WSPBind(SOCKET s, const SOCKADDR *name, int namelen, int *lpErrno);

/** WSPListen: starts listening (policy `listen` grant); an unbound socket
 *  is WSAEINVAL. A negative backlog counts as 0. Returns 0 or
 *  SOCKET_ERROR. */
int WSPListen(SOCKET s, int backlog, int *lpErrno);

/** WSPAccept: takes one pending connection (peers outside the `accept`
 *  grants are reset unseen). When `addr` and `addrlen` are not NULL the
 *  peer's address is stored there and *addrlen set to its length (too
 *  small: WSAEFAULT, and the connection is closed). The new socket
 *  inherits the listener's blocking mode, options and WSPAsyncSelect
 *  registration (SPEC AS-7). Returns it, or INVALID_SOCKET. */
SOCKET WSPAccept(SOCKET s, SOCKADDR *addr, int *addrlen, int *lpErrno);

/** WSPConnect: connects a stream socket, or sets the default peer of a
 *  datagram socket (policy `connect` grant; a denial is WSAEACCES). A
 *  non-blocking stream connect fails with WSAEWOULDBLOCK and completes in
 *  the background (FD_CONNECT, SPEC AS-20). Returns 0 or SOCKET_ERROR. */
int WSPConnect(SOCKET s, const SOCKADDR *name, int namelen, int *lpErrno);

/** WSPSend (SPEC SE-1..SE-11): sends the `dwBufferCount` buffers in order
 *  as one stream write or one datagram on a connected socket; the byte
 *  count goes to *lpNumberOfBytesSent (may be NULL). dwFlags: MSG_OOB,
 *  MSG_DONTROUTE (MSG_PARTIAL and others: WSAEOPNOTSUPP). With
 *  lpOverlapped (socket created with WSA_FLAG_OVERLAPPED) the send is
 *  overlapped: 0 when it completed at once (its completion is queued
 *  too), else SOCKET_ERROR with WSA_IO_PENDING and a completion message
 *  later; the buffers may be reused at once (SPEC SE-8). Returns 0 or
 *  SOCKET_ERROR. */
int WSPSend(SOCKET s, const WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesSent,
            DWORD dwFlags, WSAOVERLAPPED *lpOverlapped, int *lpErrno);

/** WSPSendTo: like WSPSend, to `lpTo` (datagram sockets; ignored on a
 *  connected stream socket). Policy `send-to` grant. */
int WSPSendTo(SOCKET s, const WSABUF *lpBuffers, DWORD dwBufferCount,
              DWORD *lpNumberOfBytesSent, DWORD dwFlags, const SOCKADDR *lpTo, int iTolen,
              WSAOVERLAPPED *lpOverlapped, int *lpErrno);

/** WSPRecv: receives into the buffers, filled in order, at most their
 *  total length; the byte count goes to *lpNumberOfBytesRecvd (0 on a
 *  stream socket: the peer closed gracefully). *lpFlags (may be NULL)
 *  takes MSG_PEEK, MSG_OOB, MSG_WAITALL and is left unchanged. A datagram
 *  larger than the buffers is WSAEMSGSIZE and discarded. A receive
 *  re-enables FD_READ and FD_OOB (SPEC AS-9). With lpOverlapped: what is
 *  there at once is returned; otherwise WSA_IO_PENDING, and the data is
 *  stored in these buffers (which must stay valid) by
 *  WSPGetOverlappedResult after the completion message. Returns 0 or
 *  SOCKET_ERROR. */
int WSPRecv(SOCKET s, WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesRecvd,
            DWORD *lpFlags, WSAOVERLAPPED *lpOverlapped, int *lpErrno);

/** WSPRecvFrom: like WSPRecv, and the sender's address goes to lpFrom /
 *  *lpFromlen when both are not NULL (too small: WSAEFAULT). Datagrams
 *  from peers outside the `recv-from` grants are dropped unseen. */
int WSPRecvFrom(SOCKET s, WSABUF *lpBuffers, DWORD dwBufferCount, DWORD *lpNumberOfBytesRecvd,
                DWORD *lpFlags, SOCKADDR *lpFrom, int *lpFromlen, WSAOVERLAPPED *lpOverlapped,
                int *lpErrno);

/** WSPShutdown: disables receives (SD_RECEIVE), sends (SD_SEND) or both
 *  (SD_BOTH). Returns 0 or SOCKET_ERROR. */
int WSPShutdown(SOCKET s, int how, int *lpErrno);

/** WSPCloseSocket: closes `s` and frees its descriptor; its pending
 *  overlapped operations complete with WSA_OPERATION_ABORTED (SPEC
 *  SE-11). Returns 0 or SOCKET_ERROR. */
int WSPCloseSocket(SOCKET s, int *lpErrno);

/** WSPIoctl: FIONBIO, FIONREAD, SIOCATMARK, SIO_SET_QOS, SIO_GET_QOS,
 *  SIO_ADDRESS_LIST_CHANGE, SIO_ROUTING_INTERFACE_CHANGE, SIO_FLUSH (see
 *  each code for its in and out buffers; an unknown code is WSAEINVAL, a
 *  buffer too small WSAEFAULT). The bytes written to lpvOutBuffer go to
 *  *lpcbBytesReturned (may be NULL). Returns 0 or SOCKET_ERROR. */
int WSPIoctl(SOCKET s, DWORD dwIoControlCode, const void *lpvInBuffer, DWORD cbInBuffer,
             void *lpvOutBuffer, DWORD cbOutBuffer, DWORD *lpcbBytesReturned, int *lpErrno);

/** WSPGetSockOpt: reads option `optname` at `level` (SOL_SOCKET,
 *  IPPROTO_TCP, IPPROTO_IP, IPPROTO_IPV6; see SO_* for the value types)
 *  into optval, *optlen its room in and its length out (too small:
 *  WSAEFAULT; unknown option: WSAENOPROTOOPT). Returns 0 or
 *  SOCKET_ERROR. */
int WSPGetSockOpt(SOCKET s, int level, int optname, char *optval, int *optlen, int *lpErrno);

/** WSPSetSockOpt: sets option `optname` at `level` from optval (an int,
 *  or a single byte, for the BOOL and number options; a LINGER; bytes for
 *  SO_CONNDATA). Read-only options: WSAENOPROTOOPT. Returns 0 or
 *  SOCKET_ERROR. */
int WSPSetSockOpt(SOCKET s, int level, int optname, const char *optval, int optlen,
                  int *lpErrno);

/** WSPGetSockName: the local address into name / *namelen (too small:
 *  WSAEFAULT). Returns 0 or SOCKET_ERROR. */
int WSPGetSockName(SOCKET s, SOCKADDR *name, int *namelen, int *lpErrno);

/** WSPGetPeerName: the connected peer's address into name / *namelen.
 *  Returns 0 or SOCKET_ERROR. */
int WSPGetPeerName(SOCKET s, SOCKADDR *name, int *namelen, int *lpErrno);

/** WSPAsyncSelect (SPEC AS-1..AS-26): posts a message {wMsg, s, lParam}
 *  to the queue hWnd for each of the FD_* events in lEvent as it occurs,
 *  one per event until its re-enabling call. Makes `s` non-blocking
 *  (AS-4), replaces an earlier registration (AS-5); lEvent 0 cancels
 *  (AS-6). A NULL or closed queue, or an unknown event bit, is WSAEINVAL.
 *  Returns 0 or SOCKET_ERROR. */
int WSPAsyncSelect(SOCKET s, wasp_queue *hWnd, unsigned int wMsg, long lEvent, int *lpErrno);

/** WSPJoinLeaf (SPEC JL-1..JL-10): joins `s` to the multipoint session
 *  `name`: an IP multicast group on a UDP socket created with
 *  WSA_FLAG_MULTIPOINT_C_LEAF | WSA_FLAG_MULTIPOINT_D_LEAF (policy
 *  `multicast` grant; caller data is WSAEPROTONOSUPPORT there), or a root
 *  or leaf of wasp's rooted protocol. lpCallerData (NULL for none) is sent
 *  with the join; the peer's callee data is stored in lpCalleeData->buf,
 *  at most lpCalleeData->len bytes, and its length in lpCalleeData->len
 *  (NULL: none accepted). lpSQOS: the sending QoS (beyond best effort:
 *  WSAEOPNOTSUPP, JL-8); lpGQOS is ignored. dwFlags: JL_SENDER_ONLY,
 *  JL_RECEIVER_ONLY or JL_BOTH. Returns `s` itself on a c_leaf socket
 *  (JL-3), a new c_leaf descriptor on a c_root (JL-4), or
 *  INVALID_SOCKET. */
SOCKET WSPJoinLeaf(SOCKET s, const SOCKADDR *name, int namelen, const WSABUF *lpCallerData,
                   WSABUF *lpCalleeData, const QOS *lpSQOS, const QOS *lpGQOS, DWORD dwFlags,
                   int *lpErrno);

/** WSPEnumProtocols (SPEC SO-9): the host's protocol catalogue, only the
 *  entries whose protocol is in the 0-terminated array lpiProtocols (NULL:
 *  all), into lpProtocolBuffer of *lpdwBufferLength bytes. Returns the
 *  number of entries, or SOCKET_ERROR with WSAENOBUFS and the bytes
 *  needed in *lpdwBufferLength. */
int WSPEnumProtocols(const int *lpiProtocols, WSAPROTOCOL_INFO *lpProtocolBuffer,
                     DWORD *lpdwBufferLength, int *lpErrno);

/** WSPGetOverlappedResult (SPEC SE-7): the outcome of the overlapped
 *  operation *lpOverlapped on `s`. TRUE when it completed: the bytes
 *  transferred in *lpcbTransfer, *lpdwFlags (may be NULL) set to 0, and a
 *  receive that completed after its call has its data stored in the
 *  buffers (and the sender in lpFrom) it was started with. FALSE with
 *  WSA_IO_INCOMPLETE while it pends (with fWait it waits, only this
 *  guest), WSA_INVALID_HANDLE for an unknown token, or the operation's
 *  error. */
BOOL WSPGetOverlappedResult(SOCKET s, WSAOVERLAPPED *lpOverlapped, DWORD *lpcbTransfer,
                            BOOL fWait, DWORD *lpdwFlags, int *lpErrno);

/** WSPStringToAddress: parses "a.b.c.d", "a.b.c.d:port", an IPv6 address
 *  ("::1", "fe80::1%2") or "[v6]:port" of family AddressFamily (AF_INET,
 *  AF_INET6, or AF_UNSPEC for either) into lpAddress, *lpAddressLength
 *  its room in and its length out. lpProtocolInfo is ignored (may be
 *  NULL). Unparsable: WSAEINVAL; too small: WSAEFAULT. Returns 0 or
 *  SOCKET_ERROR. */
int WSPStringToAddress(const char *AddressString, int AddressFamily,
                       const WSAPROTOCOL_INFO *lpProtocolInfo, SOCKADDR *lpAddress,
                       int *lpAddressLength, int *lpErrno);

/** WSPAddressToString: formats lpsaAddress as "a.b.c.d:port" or
 *  "[v6%scope]:port" (without the port when it is 0) into
 *  lpszAddressString, *lpdwAddressStringLength its room in and the length
 *  written, NUL included, out (too small: WSAEFAULT with the length
 *  needed). lpProtocolInfo is ignored. Returns 0 or SOCKET_ERROR. */
int WSPAddressToString(const SOCKADDR *lpsaAddress, DWORD dwAddressLength,
                       const WSAPROTOCOL_INFO *lpProtocolInfo, char *lpszAddressString,
                       DWORD *lpdwAddressStringLength, int *lpErrno);

/** The reason of this guest's most recent capability denial (WSAEACCES),
 *  naming the grant that was missing (WIT `last-denial`; not a Winsock
 *  call). Writes it NUL-terminated into buf (truncated to len - 1 bytes)
 *  and returns its full length, 0 when there was no denial. */
size_t wasp_last_denial(char *buf, size_t len);

/* ------------------------------------------------------------------------
 * Message queues: the window of WSPAsyncSelect (wit/messages.wit)
 * ---------------------------------------------------------------------- */

/** Wait forever (timeout of wasp_queue_get). */
#define WASP_INFINITE (-1)

/** One posted message (SPEC AS-1), or the completion of an overlapped
 *  operation (SPEC SE-7). */
typedef struct wasp_msg {
    /** The message id given to WSPAsyncSelect (`wMsg`), or the overlapped
     *  argument's wMsg. */
    uint32_t message;
    /** The socket (`wParam`). */
    SOCKET wParam;
    /** The packed lParam, Winsock values: WSAGETSELECTEVENT(lParam) is the
     *  FD_* event, WSAGETSELECTERROR(lParam) the error (0 for none). */
    uint32_t lParam;
    /** The Winsock error the message carries (the event's or the
     *  completed operation's), 0 for none. */
    int iError;
    /** Nonzero when this is the completion of an overlapped operation
     *  (its event is then 0). */
    int bCompletion;
    /** The completed operation's token (WSAOVERLAPPED.Token). */
    uint64_t Token;
    /** Bytes the completed operation transferred (a receive's bytes come
     *  from WSPGetOverlappedResult). */
    DWORD cbTransferred;
} wasp_msg;

/** A new message queue holding at most `capacity` messages
 *  (1..=65536, else NULL). FD_CONNECT and FD_CLOSE may go past a full
 *  queue, once each per socket; other events wait for room, never lost.
 *  Free it with wasp_queue_free(). */
wasp_queue *wasp_queue_new(uint32_t capacity);

/** Takes the oldest message into *msg, waiting up to timeout_ms
 *  milliseconds (WASP_INFINITE: forever; 0: not at all). Returns 1, or 0
 *  on time-out or when the queue is closed (GetMessage). */
int wasp_queue_get(wasp_queue *q, int64_t timeout_ms, wasp_msg *msg);

/** The oldest message into *msg, left in the queue; never waits. Returns
 *  1, or 0 when the queue is empty (PeekMessage without PM_REMOVE). */
int wasp_queue_peek(wasp_queue *q, wasp_msg *msg);

/** Takes up to `max` waiting messages, oldest first, into msgs (one host
 *  call); never waits. Returns how many. */
uint32_t wasp_queue_drain(wasp_queue *q, wasp_msg *msgs, uint32_t max);

/** Messages waiting in the queue. */
uint32_t wasp_queue_len(wasp_queue *q);

/** How often posts found the queue full and were held back. */
uint64_t wasp_queue_overflows(wasp_queue *q);

/** Closes the queue: delivery stops (registered sockets stay non-blocking
 *  with no registration) and wasp_queue_get returns 0. The queue itself
 *  is still freed with wasp_queue_free(). */
void wasp_queue_close(wasp_queue *q);

/** A wasi:io/poll pollable, ready when a message waits in q (or q is
 *  closed), to wait on the queue together with other pollables
 *  (wasi_io_poll_poll of bindings/plugin.h); drop it with
 *  wasi_io_poll_pollable_drop_own(). */
wasi_io_poll_own_pollable_t wasp_queue_subscribe(wasp_queue *q);

/** Drops the queue (stops delivery, as wasp_queue_close) and frees it. */
void wasp_queue_free(wasp_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* WASP_H */
