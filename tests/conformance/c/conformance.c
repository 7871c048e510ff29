/*
 * The conformance scenarios of tests/conformance/SCENARIOS.md with the wasp
 * C SDK (guest-sdk/c/wasp.h): tcp-echo PORT, udp PORT, denied PORT,
 * multicast GROUP PORT. Prints exactly the lines of the scenario; on an
 * unexpected error `error: <what> <number> <NAME>` and exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasp.h"

/* Message ids of the tcp-echo scenario. */
#define WM_LISTENER 1
#define WM_CONNECTION 2

static void out(const char *line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void die(const char *what, int err) {
    printf("error: %s %d %s\n", what, err, wasp_error_name(err));
    fflush(stdout);
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: conformance tcp-echo PORT | udp PORT | denied PORT | "
                    "multicast GROUP PORT\n");
    exit(2);
}

static uint16_t parse_port(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
        usage();
    }
    return (uint16_t)v;
}

/* The socket address of "HOST" (IPv4 or IPv6) and PORT. */
static SOCKADDR_STORAGE address(const char *host, uint16_t port, int *len) {
    SOCKADDR_STORAGE a;
    int err;
    *len = (int)sizeof a;
    if (WSPStringToAddress(host, AF_UNSPEC, NULL, (SOCKADDR *)&a, len, &err) == SOCKET_ERROR) {
        die("address", err);
    }
    if (a.ss_family == AF_INET) {
        ((SOCKADDR_IN *)&a)->sin_port = htons(port);
    } else {
        ((SOCKADDR_IN6 *)&a)->sin6_port = htons(port);
    }
    return a;
}

/* The text of a socket address ("127.0.0.1:7000", "[::1]:7000"). */
static const char *address_text(const SOCKADDR_STORAGE *a, int len, char *text, DWORD room) {
    int err;
    if (WSPAddressToString((const SOCKADDR *)a, (DWORD)len, NULL, text, &room, &err) ==
        SOCKET_ERROR) {
        die("address", err);
    }
    return text;
}

/* Receives what is there and echoes it; adds it to *total. Returns 1 when
 * something was received, 0 when nothing is left (WSAEWOULDBLOCK or the
 * end of the stream). */
static int echo_once(SOCKET s, uint64_t *total) {
    char buf[4096];
    WSABUF in = {sizeof buf, buf};
    DWORD got = 0, flags = 0;
    int err;
    if (WSPRecv(s, &in, 1, &got, &flags, NULL, &err) == SOCKET_ERROR) {
        if (err == WSAEWOULDBLOCK) {
            return 0;
        }
        die("recv", err);
    }
    if (got == 0) {
        return 0;
    }
    DWORD off = 0;
    while (off < got) {
        WSABUF outb = {got - off, buf + off};
        DWORD sent = 0;
        if (WSPSend(s, &outb, 1, &sent, 0, NULL, &err) == SOCKET_ERROR) {
            if (err == WSAEWOULDBLOCK) {
                continue; /* the peer reads; room comes back */
            }
            die("send", err);
        }
        off += sent;
    }
    *total += got;
    return 1;
}

static int tcp_echo(uint16_t port) {
    int err, len;
    SOCKADDR_STORAGE local = address("127.0.0.1", port, &len);
    SOCKET listener = WSPSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0, &err);
    if (listener == INVALID_SOCKET) {
        die("socket", err);
    }
    if (WSPBind(listener, (SOCKADDR *)&local, len, &err) == SOCKET_ERROR) {
        die("bind", err);
    }
    if (WSPListen(listener, 8, &err) == SOCKET_ERROR) {
        die("listen", err);
    }
    wasp_queue *queue = wasp_queue_new(16);
    if (WSPAsyncSelect(listener, queue, WM_LISTENER, FD_ACCEPT, &err) == SOCKET_ERROR) {
        die("async-select", err);
    }
    char text[INET6_ADDRSTRLEN];
    printf("listening on %s\n", address_text(&local, len, text, sizeof text));
    fflush(stdout);

    SOCKET conn = INVALID_SOCKET;
    uint64_t total = 0;
    wasp_msg msg;
    while (wasp_queue_get(queue, WASP_INFINITE, &msg)) {
        uint32_t event = WSAGETSELECTEVENT(msg.lParam);
        if (msg.message == WM_LISTENER && conn == INVALID_SOCKET && event == FD_ACCEPT) {
            conn = WSPAccept(listener, NULL, NULL, &err);
            if (conn == INVALID_SOCKET) {
                die("accept", err);
            }
            if (WSPAsyncSelect(conn, queue, WM_CONNECTION, FD_READ | FD_CLOSE, &err) ==
                SOCKET_ERROR) {
                die("async-select", err);
            }
            out("accepted");
        } else if (msg.message == WM_CONNECTION && msg.wParam == conn && event == FD_READ) {
            echo_once(conn, &total);
        } else if (msg.message == WM_CONNECTION && msg.wParam == conn && event == FD_CLOSE) {
            while (echo_once(conn, &total)) {
            }
            printf("closed after %llu bytes\n", (unsigned long long)total);
            fflush(stdout);
            if (WSPCloseSocket(conn, &err) == SOCKET_ERROR ||
                WSPCloseSocket(listener, &err) == SOCKET_ERROR) {
                die("close", err);
            }
            wasp_queue_free(queue);
            return 0;
        }
    }
    die("queue", WSAEINVAL);
    return 1;
}

/* Prints `received N bytes "TEXT"` and `suffix`. */
static void print_received(const char *buf, DWORD n, const char *suffix) {
    printf("received %u bytes \"%.*s\"%s\n", (unsigned)n, (int)n, buf, suffix);
    fflush(stdout);
}

static int udp(uint16_t port) {
    int err, len;
    SOCKADDR_STORAGE local = address("127.0.0.1", 0, &len);
    SOCKET s = WSPSocket(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, 0, &err);
    if (s == INVALID_SOCKET || WSPBind(s, (SOCKADDR *)&local, len, &err) == SOCKET_ERROR) {
        die("bind", err);
    }
    SOCKADDR_STORAGE peer = address("127.0.0.1", port, &len);
    char ping[] = "ping";
    WSABUF outb = {4, ping};
    DWORD sent;
    if (WSPSendTo(s, &outb, 1, &sent, 0, (SOCKADDR *)&peer, len, NULL, &err) == SOCKET_ERROR) {
        die("sendto", err);
    }
    char buf[64];
    WSABUF in = {sizeof buf, buf};
    DWORD got = 0, flags = 0;
    SOCKADDR_STORAGE from;
    int fromlen = (int)sizeof from;
    if (WSPRecvFrom(s, &in, 1, &got, &flags, (SOCKADDR *)&from, &fromlen, NULL, &err) ==
        SOCKET_ERROR) {
        die("recvfrom", err);
    }
    char text[INET6_ADDRSTRLEN], suffix[INET6_ADDRSTRLEN + 8];
    snprintf(suffix, sizeof suffix, " from %s", address_text(&from, fromlen, text, sizeof text));
    print_received(buf, got, suffix);
    WSPCloseSocket(s, &err);
    return 0;
}

static int denied(uint16_t port) {
    int err, len;
    SOCKADDR_STORAGE peer = address("127.0.0.1", port, &len);
    SOCKET s = WSPSocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0, &err);
    if (s == INVALID_SOCKET) {
        die("socket", err);
    }
    if (WSPConnect(s, (SOCKADDR *)&peer, len, &err) != SOCKET_ERROR) {
        die("connect succeeded", WSAEINVAL);
    }
    printf("connect: %d %s\n", err, wasp_error_name(err));
    char reason[1024];
    wasp_last_denial(reason, sizeof reason);
    printf("denial: %s\n", reason);
    fflush(stdout);
    WSPCloseSocket(s, &err);
    return 0;
}

static int multicast(const char *group, uint16_t port) {
    int err, len;
    SOCKADDR_STORAGE session = address(group, port, &len);
    SOCKET s = WSPSocket(session.ss_family, SOCK_DGRAM, IPPROTO_UDP, NULL, 0,
                         WSA_FLAG_MULTIPOINT_C_LEAF | WSA_FLAG_MULTIPOINT_D_LEAF, &err);
    if (s == INVALID_SOCKET) {
        die("socket", err);
    }
    if (WSPJoinLeaf(s, (SOCKADDR *)&session, len, NULL, NULL, NULL, NULL, JL_BOTH, &err) ==
        INVALID_SOCKET) {
        die("join-leaf", err);
    }
    char text[INET6_ADDRSTRLEN];
    printf("joined %s\n", address_text(&session, len, text, sizeof text));
    fflush(stdout);
    char hello[] = "hello";
    WSABUF outb = {5, hello};
    DWORD sent;
    if (WSPSend(s, &outb, 1, &sent, 0, NULL, &err) == SOCKET_ERROR) {
        die("send", err);
    }
    char buf[64];
    WSABUF in = {sizeof buf, buf};
    DWORD got = 0, flags = 0;
    if (WSPRecv(s, &in, 1, &got, &flags, NULL, &err) == SOCKET_ERROR) {
        die("recvfrom", err);
    }
    print_received(buf, got, "");
    WSPCloseSocket(s, &err);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "tcp-echo") == 0) {
        return tcp_echo(parse_port(argv[2]));
    }
    if (argc == 3 && strcmp(argv[1], "udp") == 0) {
        return udp(parse_port(argv[2]));
    }
    if (argc == 3 && strcmp(argv[1], "denied") == 0) {
        return denied(parse_port(argv[2]));
    }
    if (argc == 4 && strcmp(argv[1], "multicast") == 0) {
        return multicast(argv[2], parse_port(argv[3]));
    }
    usage();
    return 2;
}
