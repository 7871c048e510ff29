/*
 * A self-test of the wasp C SDK beyond the conformance scenarios: address
 * strings, the protocol catalogue, socket options, ioctls, scatter/gather,
 * MSG_PEEK and an overlapped receive over loopback UDP and TCP. Run by
 * `make -C guest-sdk/c selftest` (policy: selftest.toml); prints `ok` and
 * exits 0, or prints what failed and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasp.h"

static int failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            printf("FAILED %s:%d: %s (last error %d %s)\n", __FILE__, __LINE__, #cond,     \
                   WSAGetLastError(), wasp_error_name(WSAGetLastError()));                 \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* Parses and formats back `text`; the result must be `expect`. */
static void roundtrip(const char *text, int af, const char *expect) {
    SOCKADDR_STORAGE a;
    int len = sizeof a, err = 0;
    char out[INET6_ADDRSTRLEN];
    DWORD room = sizeof out;
    if (WSPStringToAddress(text, af, NULL, (SOCKADDR *)&a, &len, &err) == SOCKET_ERROR ||
        WSPAddressToString((SOCKADDR *)&a, (DWORD)len, NULL, out, &room, &err) == SOCKET_ERROR) {
        printf("FAILED roundtrip %s: %d\n", text, err);
        failures++;
        return;
    }
    if (strcmp(out, expect) != 0) {
        printf("FAILED roundtrip %s: %s, not %s\n", text, out, expect);
        failures++;
    }
}

static void addresses(void) {
    roundtrip("127.0.0.1:7000", AF_INET, "127.0.0.1:7000");
    roundtrip("10.1.2.3", AF_UNSPEC, "10.1.2.3");
    roundtrip("::1", AF_INET6, "::1");
    roundtrip("[::1]:80", AF_UNSPEC, "[::1]:80");
    roundtrip("fe80::1%3", AF_INET6, "fe80::1%3");
    roundtrip("2001:DB8:0:0:1:0:0:1", AF_INET6, "2001:db8::1:0:0:1");
    roundtrip("1:0:0:2:0:0:0:3", AF_INET6, "1:0:0:2::3");
    roundtrip("::ffff:192.0.2.1", AF_INET6, "::ffff:192.0.2.1");
    roundtrip("1::", AF_INET6, "1::");
    roundtrip("::", AF_INET6, "::");
    SOCKADDR_STORAGE a;
    int len = sizeof a, err = 0;
    const char *bad[] = {"1.2.3", "1.2.3.4:70000", "256.1.1.1", "1:2", "1::2::3", ":1", "[::1",
                         "12345::", "1.2.3.4 ", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = sizeof a;
        if (WSPStringToAddress(bad[i], AF_UNSPEC, NULL, (SOCKADDR *)&a, &len, &err) !=
                SOCKET_ERROR ||
            err != WSAEINVAL) {
            printf("FAILED: \"%s\" parsed\n", bad[i]);
            failures++;
        }
    }
    SOCKADDR_IN small;
    len = sizeof small;
    CHECK(WSPStringToAddress("::1", AF_INET6, NULL, (SOCKADDR *)&small, &len, &err) ==
              SOCKET_ERROR &&
          err == WSAEFAULT && len == (int)sizeof(SOCKADDR_IN6));
}

static SOCKADDR_IN loopback(uint16_t port) {
    SOCKADDR_IN a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void catalogue(void) {
    int err = 0;
    DWORD room = 0;
    CHECK(WSPEnumProtocols(NULL, NULL, &room, &err) == SOCKET_ERROR && err == WSAENOBUFS);
    CHECK(room > 0 && room % sizeof(WSAPROTOCOL_INFO) == 0);
    WSAPROTOCOL_INFO *infos = malloc(room);
    int n = WSPEnumProtocols(NULL, infos, &room, &err);
    CHECK(n > 0);
    int udp_only[] = {IPPROTO_UDP, 0};
    room = (DWORD)n * sizeof(WSAPROTOCOL_INFO);
    int m = WSPEnumProtocols(udp_only, infos, &room, &err);
    CHECK(m > 0);
    for (int i = 0; i < m; i++) {
        CHECK(infos[i].iProtocol == IPPROTO_UDP);
        CHECK(infos[i].iSocketType == SOCK_DGRAM);
        CHECK(infos[i].dwServiceFlags1 & XP1_CONNECTIONLESS);
    }
    /* A socket from a catalogue entry (SPEC SO-4). */
    SOCKET s = WSPSocket(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &infos[0], 0,
                         0, &err);
    CHECK(s != INVALID_SOCKET);
    WSAPROTOCOL_INFO got;
    int len = sizeof got;
    CHECK(WSPGetSockOpt(s, SOL_SOCKET, SO_PROTOCOL_INFO, (char *)&got, &len, &err) == 0);
    CHECK(got.dwCatalogEntryId == infos[0].dwCatalogEntryId);
    CHECK(strcmp(got.szProtocol, infos[0].szProtocol) == 0);
    WSPCloseSocket(s, &err);
    free(infos);
    CHECK(WSPSocket(AF_INET, SOCK_STREAM, IPPROTO_UDP, NULL, 0, 0, &err) == INVALID_SOCKET &&
          err == WSAEPROTOTYPE);
    CHECK(WSPSocket(AF_INET, SOCK_RAW, 0, NULL, 0, 0, &err) == INVALID_SOCKET &&
          err == WSAESOCKTNOSUPPORT);
    CHECK(WSPSocket(AF_INET, SOCK_STREAM, 0, NULL, 0, 0x4000, &err) == INVALID_SOCKET &&
          err == WSAEINVAL);
    CHECK(WSPCloseSocket(12345, &err) == SOCKET_ERROR && err == WSAENOTSOCK);
    CHECK(WSAGetLastError() == WSAENOTSOCK);
}

static void udp(void) {
    int err = 0;
    SOCKET a = WSPSocket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, WSA_FLAG_OVERLAPPED, &err);
    SOCKET b = WSPSocket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, 0, &err);
    CHECK(a != INVALID_SOCKET && b != INVALID_SOCKET);
    SOCKADDR_IN any = loopback(0);
    CHECK(WSPBind(a, (SOCKADDR *)&any, sizeof any, &err) == 0);
    CHECK(WSPBind(b, (SOCKADDR *)&any, sizeof any, &err) == 0);
    SOCKADDR_IN a_addr;
    int len = sizeof a_addr;
    CHECK(WSPGetSockName(a, (SOCKADDR *)&a_addr, &len, &err) == 0);
    CHECK(len == sizeof(SOCKADDR_IN) && a_addr.sin_family == AF_INET && a_addr.sin_port != 0 &&
          a_addr.sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    int type = 0;
    len = sizeof type;
    CHECK(WSPGetSockOpt(a, SOL_SOCKET, SO_TYPE, (char *)&type, &len, &err) == 0 &&
          type == SOCK_DGRAM);
    unsigned max = 0;
    len = sizeof max;
    CHECK(WSPGetSockOpt(a, SOL_SOCKET, SO_MAX_MSG_SIZE, (char *)&max, &len, &err) == 0 &&
          max > 0);
    CHECK(WSPSetSockOpt(a, SOL_SOCKET, SO_TYPE, (char *)&type, sizeof type, &err) ==
              SOCKET_ERROR &&
          err == WSAENOPROTOOPT);
    CHECK(WSPGetSockOpt(a, 1234, 5, (char *)&type, &len, &err) == SOCKET_ERROR &&
          err == WSAENOPROTOOPT);

    /* An overlapped receive that pends, then completes (SPEC SE-7). */
    wasp_queue *q = wasp_queue_new(8);
    char part1[3], part2[16];
    WSABUF bufs[2] = {{sizeof part1, part1}, {sizeof part2, part2}};
    DWORD got = 0, flags = 0;
    SOCKADDR_STORAGE from;
    int fromlen = sizeof from;
    WSAOVERLAPPED ov = {42, q, 7};
    CHECK(WSPRecvFrom(a, bufs, 2, &got, &flags, (SOCKADDR *)&from, &fromlen, &ov, &err) ==
              SOCKET_ERROR &&
          err == WSA_IO_PENDING);
    DWORD done = 0;
    CHECK(WSPGetOverlappedResult(a, &ov, &done, FALSE, NULL, &err) == FALSE &&
          err == WSA_IO_INCOMPLETE);
    /* Gather: three buffers, one datagram. */
    char x[] = "abc", y[] = "defg", z[] = "h";
    WSABUF out[3] = {{3, x}, {4, y}, {1, z}};
    DWORD sent = 0;
    CHECK(WSPSendTo(b, out, 3, &sent, 0, (SOCKADDR *)&a_addr, sizeof a_addr, NULL, &err) == 0 &&
          sent == 8);
    wasp_msg msg;
    CHECK(wasp_queue_get(q, 5000, &msg) == 1);
    CHECK(msg.bCompletion && msg.message == 7 && msg.wParam == a && msg.Token == 42 &&
          msg.cbTransferred == 8 && msg.iError == 0);
    DWORD xfer = 0, oflags = 99;
    CHECK(WSPGetOverlappedResult(a, &ov, &xfer, TRUE, &oflags, &err) == TRUE);
    CHECK(xfer == 8 && oflags == 0);
    CHECK(memcmp(part1, "abc", 3) == 0 && memcmp(part2, "defgh", 5) == 0);
    SOCKADDR_IN b_addr;
    len = sizeof b_addr;
    CHECK(WSPGetSockName(b, (SOCKADDR *)&b_addr, &len, &err) == 0);
    CHECK(((SOCKADDR_IN *)&from)->sin_port == b_addr.sin_port);

    /* MSG_PEEK, FIONREAD, then a scatter receive. */
    CHECK(WSPSendTo(b, out, 2, &sent, 0, (SOCKADDR *)&a_addr, sizeof a_addr, NULL, &err) == 0);
    char peek[16];
    WSABUF pb = {sizeof peek, peek};
    flags = MSG_PEEK;
    CHECK(WSPRecv(a, &pb, 1, &got, &flags, NULL, &err) == 0 && got == 7 && flags == MSG_PEEK);
    uint32_t avail = 0;
    DWORD ret = 0;
    CHECK(WSPIoctl(a, FIONREAD, NULL, 0, &avail, sizeof avail, &ret, &err) == 0 && ret == 4 &&
          avail >= 7);
    flags = 0;
    CHECK(WSPRecv(a, bufs, 2, &got, &flags, NULL, &err) == 0 && got == 7);
    CHECK(memcmp(part1, "abc", 3) == 0 && memcmp(part2, "defg", 4) == 0);
    /* Too small a buffer: WSAEMSGSIZE. */
    CHECK(WSPSendTo(b, out, 3, &sent, 0, (SOCKADDR *)&a_addr, sizeof a_addr, NULL, &err) == 0);
    uint32_t nb = 0;
    CHECK(WSPIoctl(a, FIONBIO, &nb, sizeof nb, NULL, 0, NULL, &err) == 0);
    WSABUF tiny = {2, peek};
    CHECK(WSPRecv(a, &tiny, 1, &got, &flags, NULL, &err) == SOCKET_ERROR && err == WSAEMSGSIZE);
    /* Unknown flags and ioctls. */
    CHECK(WSPRecv(a, &tiny, 1, &got, &(DWORD){0x100}, NULL, &err) == SOCKET_ERROR &&
          err == WSAEOPNOTSUPP);
    CHECK(WSPIoctl(a, 0x12345678, NULL, 0, NULL, 0, NULL, &err) == SOCKET_ERROR &&
          err == WSAEINVAL);
    QOS qos;
    ret = 0;
    CHECK(WSPIoctl(a, SIO_GET_QOS, NULL, 0, &qos, sizeof qos, &ret, &err) == 0 &&
          ret == sizeof qos);
    CHECK(WSPCloseSocket(a, &err) == 0 && WSPCloseSocket(b, &err) == 0);
    CHECK(wasp_queue_len(q) == 0);
    wasp_queue_free(q);
}

static void tcp(void) {
    int err = 0;
    SOCKET l = WSPSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0, &err);
    SOCKADDR_IN any = loopback(0);
    CHECK(WSPBind(l, (SOCKADDR *)&any, sizeof any, &err) == 0);
    CHECK(WSPListen(l, 4, &err) == 0);
    int on = 0;
    int len = sizeof on;
    CHECK(WSPGetSockOpt(l, SOL_SOCKET, SO_ACCEPTCONN, (char *)&on, &len, &err) == 0 && on == 1);
    SOCKADDR_IN where;
    len = sizeof where;
    CHECK(WSPGetSockName(l, (SOCKADDR *)&where, &len, &err) == 0);
    wasp_queue *q = wasp_queue_new(16);
    CHECK(WSPAsyncSelect(l, q, 1, FD_ACCEPT, &err) == 0);
    CHECK(WSPAsyncSelect(l, q, 1, 0x10000, &err) == SOCKET_ERROR && err == WSAEINVAL);
    CHECK(WSPAsyncSelect(l, NULL, 1, FD_ACCEPT, &err) == SOCKET_ERROR && err == WSAEINVAL);
    SOCKET c = WSPSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0, &err);
    CHECK(WSPBind(c, (SOCKADDR *)&any, sizeof any, &err) == 0);
    CHECK(WSPAsyncSelect(c, q, 2, FD_CONNECT | FD_WRITE | FD_READ | FD_CLOSE, &err) == 0);
    CHECK(WSPConnect(c, (SOCKADDR *)&where, sizeof where, &err) == SOCKET_ERROR &&
          err == WSAEWOULDBLOCK);
    int seen_connect = 0, seen_accept = 0;
    SOCKET s = INVALID_SOCKET;
    wasp_msg m;
    while ((!seen_connect || !seen_accept) && wasp_queue_get(q, 5000, &m)) {
        if (m.message == 2 && WSAGETSELECTEVENT(m.lParam) == FD_CONNECT) {
            CHECK(WSAGETSELECTERROR(m.lParam) == 0 && m.wParam == c);
            seen_connect = 1;
        }
        if (m.message == 1 && WSAGETSELECTEVENT(m.lParam) == FD_ACCEPT) {
            SOCKADDR_IN peer;
            int plen = sizeof peer;
            s = WSPAccept(l, (SOCKADDR *)&peer, &plen, &err);
            CHECK(s != INVALID_SOCKET && plen == sizeof peer && peer.sin_family == AF_INET);
            seen_accept = 1;
        }
    }
    CHECK(seen_connect && seen_accept);
    int nodelay = 1;
    CHECK(WSPSetSockOpt(s, IPPROTO_TCP, TCP_NODELAY, (char *)&nodelay, sizeof nodelay, &err) == 0);
    nodelay = 0;
    len = sizeof nodelay;
    CHECK(WSPGetSockOpt(s, IPPROTO_TCP, TCP_NODELAY, (char *)&nodelay, &len, &err) == 0 &&
          nodelay == 1);
    LINGER lg = {1, 5};
    CHECK(WSPSetSockOpt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, sizeof lg, &err) == 0);
    memset(&lg, 0, sizeof lg);
    len = sizeof lg;
    CHECK(WSPGetSockOpt(s, SOL_SOCKET, SO_LINGER, (char *)&lg, &len, &err) == 0 &&
          lg.l_onoff == 1 && lg.l_linger == 5);
    SOCKADDR_IN peer;
    len = sizeof peer;
    CHECK(WSPGetPeerName(c, (SOCKADDR *)&peer, &len, &err) == 0 && peer.sin_port == where.sin_port);
    char msg[] = "stream";
    WSABUF b = {6, msg};
    DWORD n = 0;
    CHECK(WSPSend(s, &b, 1, &n, 0, NULL, &err) == 0 && n == 6);
    /* FD_WRITE after connect, FD_READ with the data. */
    int seen_read = 0;
    while (!seen_read && wasp_queue_get(q, 5000, &m)) {
        seen_read = m.message == 2 && WSAGETSELECTEVENT(m.lParam) == FD_READ;
    }
    CHECK(seen_read);
    char in[16];
    WSABUF ib = {sizeof in, in};
    DWORD flags = MSG_WAITALL;
    CHECK(WSPRecv(c, &ib, 1, &n, &flags, NULL, &err) == SOCKET_ERROR || n == 6);
    flags = 0;
    if (n != 6) {
        CHECK(WSPRecv(c, &ib, 1, &n, &flags, NULL, &err) == 0 && n == 6);
    }
    CHECK(memcmp(in, "stream", 6) == 0);
    CHECK(WSPShutdown(s, SD_SEND, &err) == 0);
    CHECK(WSPShutdown(s, 7, &err) == SOCKET_ERROR && err == WSAEINVAL);
    int seen_close = 0;
    while (!seen_close && wasp_queue_get(q, 5000, &m)) {
        seen_close = m.message == 2 && WSAGETSELECTEVENT(m.lParam) == FD_CLOSE;
    }
    CHECK(seen_close);
    CHECK(WSPCloseSocket(c, &err) == 0 && WSPCloseSocket(s, &err) == 0 &&
          WSPCloseSocket(l, &err) == 0);
    wasp_queue_close(q);
    CHECK(wasp_queue_get(q, WASP_INFINITE, &m) == 0);
    wasp_queue_free(q);
}

int main(void) {
    addresses();
    catalogue();
    udp();
    tcp();
    char why[8];
    size_t full = wasp_last_denial(why, sizeof why);
    CHECK(full == 0 || strlen(why) == (full < 7 ? full : 7));
    if (failures > 0) {
        printf("%d failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
