/*
 * c-echo: a single-threaded, event-driven TCP echo server written against
 * the wasp C SDK (guest-sdk/c/wasp.h), in the shape of a Windows
 * WSAAsyncSelect program: one message queue (the window), FD_* messages,
 * no thread and no blocking call.
 *
 *     wasp run echo.wasm --policy policy.toml -- [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:7000 ("[::1]:7000" for IPv6, if the
 * policy grants it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasp.h"

/* Message ids (wMsg) of the listener's and of the connections' events. */
#define WM_LISTENER 1
#define WM_CONNECTION 2

/* One accepted connection and the bytes it still has to send back. */
struct conn {
    struct conn *next;
    SOCKET s;
    char peer[INET6_ADDRSTRLEN];
    unsigned long long echoed;
    char *pending;
    DWORD pending_len, pending_off;
    int closing; /* FD_CLOSE came while an echo was pending */
};

static struct conn *conns;
static wasp_queue *queue;

static void fail(const char *what, int err) {
    fprintf(stderr, "c-echo: %s: %d %s\n", what, err, wasp_error_name(err));
    exit(1);
}

static struct conn *find(SOCKET s) {
    struct conn *c = conns;
    while (c != NULL && c->s != s) {
        c = c->next;
    }
    return c;
}

static void drop(struct conn *c, const char *why) {
    int err;
    printf("closed %s after %llu bytes%s\n", c->peer, c->echoed, why);
    fflush(stdout);
    WSPCloseSocket(c->s, &err);
    struct conn **p = &conns;
    while (*p != c) {
        p = &(*p)->next;
    }
    *p = c->next;
    free(c->pending);
    free(c);
}

/* Sends what is pending. Returns 1 when all is sent, 0 when the socket is
 * full (FD_WRITE comes when there is room again), -1 after an error. */
static int flush(struct conn *c) {
    int err;
    while (c->pending_off < c->pending_len) {
        WSABUF b = {c->pending_len - c->pending_off, c->pending + c->pending_off};
        DWORD sent = 0;
        if (WSPSend(c->s, &b, 1, &sent, 0, NULL, &err) == SOCKET_ERROR) {
            if (err == WSAEWOULDBLOCK) {
                return 0;
            }
            fprintf(stderr, "c-echo: send to %s: %d %s\n", c->peer, err, wasp_error_name(err));
            return -1;
        }
        c->pending_off += sent;
        c->echoed += sent;
    }
    c->pending_len = c->pending_off = 0;
    return 1;
}

/* Echoes what has arrived, until nothing is left or the socket is full.
 * Returns 0, or -1 after an error. */
static int pump(struct conn *c) {
    static char buf[16384];
    int err, r;
    while ((r = flush(c)) == 1) {
        WSABUF b = {sizeof buf, buf};
        DWORD got = 0, flags = 0;
        if (WSPRecv(c->s, &b, 1, &got, &flags, NULL, &err) == SOCKET_ERROR) {
            if (err == WSAEWOULDBLOCK) {
                return 0; /* FD_READ comes with the next data */
            }
            fprintf(stderr, "c-echo: recv from %s: %d %s\n", c->peer, err, wasp_error_name(err));
            return -1;
        }
        if (got == 0) {
            return 0; /* end of stream: FD_CLOSE follows */
        }
        char *p = realloc(c->pending, got);
        if (p == NULL) {
            return -1;
        }
        c->pending = p;
        memcpy(c->pending, buf, got);
        c->pending_len = got;
        c->pending_off = 0;
    }
    return r;
}

static void on_accept(SOCKET listener) {
    for (;;) {
        SOCKADDR_STORAGE peer;
        int len = (int)sizeof peer, err;
        SOCKET s = WSPAccept(listener, (SOCKADDR *)&peer, &len, &err);
        if (s == INVALID_SOCKET) {
            if (err != WSAEWOULDBLOCK) {
                fprintf(stderr, "c-echo: accept: %d %s\n", err, wasp_error_name(err));
            }
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            WSPCloseSocket(s, &err);
            return;
        }
        c->s = s;
        DWORD room = sizeof c->peer;
        if (WSPAddressToString((SOCKADDR *)&peer, (DWORD)len, NULL, c->peer, &room, &err) ==
            SOCKET_ERROR) {
            strcpy(c->peer, "?");
        }
        c->next = conns;
        conns = c;
        /* It inherited the listener's registration (SPEC AS-7): replace it. */
        if (WSPAsyncSelect(s, queue, WM_CONNECTION, FD_READ | FD_WRITE | FD_CLOSE, &err) ==
            SOCKET_ERROR) {
            fprintf(stderr, "c-echo: async-select: %d %s\n", err, wasp_error_name(err));
            drop(c, " (async-select failed)");
            continue;
        }
        printf("accepted %s\n", c->peer);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    const char *where = argc > 1 ? argv[1] : "127.0.0.1:7000";
    SOCKADDR_STORAGE local;
    int len = (int)sizeof local, err;
    if (WSPStringToAddress(where, AF_UNSPEC, NULL, (SOCKADDR *)&local, &len, &err) ==
        SOCKET_ERROR) {
        fprintf(stderr, "c-echo: %s is not an address (like 127.0.0.1:7000)\n", where);
        return 2;
    }
    SOCKET listener = WSPSocket(local.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, 0, &err);
    if (listener == INVALID_SOCKET) {
        fail("socket", err);
    }
    if (WSPBind(listener, (SOCKADDR *)&local, len, &err) == SOCKET_ERROR) {
        char why[256];
        if (err == WSAEACCES && wasp_last_denial(why, sizeof why) > 0) {
            fprintf(stderr, "c-echo: %s\n", why);
        }
        fail("bind", err);
    }
    if (WSPListen(listener, 128, &err) == SOCKET_ERROR) {
        fail("listen", err);
    }
    queue = wasp_queue_new(1024);
    if (WSPAsyncSelect(listener, queue, WM_LISTENER, FD_ACCEPT, &err) == SOCKET_ERROR) {
        fail("async-select", err);
    }
    printf("listening on %s\n", where);
    fflush(stdout);

    /* The message loop (GetMessage / dispatch). */
    wasp_msg msg;
    while (wasp_queue_get(queue, WASP_INFINITE, &msg)) {
        uint32_t event = WSAGETSELECTEVENT(msg.lParam);
        int error = WSAGETSELECTERROR(msg.lParam);
        if (msg.message == WM_LISTENER) {
            if (event == FD_ACCEPT) {
                on_accept(listener);
            }
            continue;
        }
        struct conn *c = find(msg.wParam);
        if (msg.message != WM_CONNECTION || c == NULL) {
            continue; /* a message for a socket closed meanwhile */
        }
        switch (event) {
        case FD_READ:
        case FD_WRITE:
            if (pump(c) < 0) {
                drop(c, " (error)");
            } else if (c->closing && c->pending_off == c->pending_len) {
                drop(c, "");
            }
            break;
        case FD_CLOSE:
            /* All data has been read before FD_CLOSE (SPEC AS-18); the
             * last echo may still wait for room (then FD_WRITE ends it). */
            if (error != 0) {
                drop(c, " (reset)");
            } else if (pump(c) < 0) {
                drop(c, " (error)");
            } else if (c->pending_off < c->pending_len) {
                c->closing = 1;
            } else {
                drop(c, "");
            }
            break;
        default:
            break;
        }
    }
    return 0;
}
