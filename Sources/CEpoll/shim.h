// epoll and eventfd for Swift: Glibc's module does not export them, and `struct epoll_event` is packed on x86_64,
// which Swift cannot import faithfully, so these wrappers take and return plain values.
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

static const uint32_t CAIRN_EPOLL_IN = EPOLLIN;
static const uint32_t CAIRN_EPOLL_OUT = EPOLLOUT;
static const uint32_t CAIRN_EPOLL_ERR = EPOLLERR;
static const uint32_t CAIRN_EPOLL_HUP = EPOLLHUP;
static const int CAIRN_EPOLL_CTL_ADD = EPOLL_CTL_ADD;
static const int CAIRN_EPOLL_CTL_MOD = EPOLL_CTL_MOD;
static const int CAIRN_EPOLL_CTL_DEL = EPOLL_CTL_DEL;

static inline int cairn_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static inline int cairn_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

/// Names the calling thread (at most 15 bytes show) for perf and top; pthread_setname_np needs _GNU_SOURCE.
static inline void cairn_name_thread(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

static inline int cairn_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event = { .events = events, .data = { .u64 = token } };
    return epoll_ctl(epfd, op, fd, &event);
}

/// Waits like epoll_wait (at most 256 events), unpacking each event into `tokens[i]` and `events[i]`.
static inline int cairn_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout) {
    struct epoll_event ready[256];
    int n = epoll_wait(epfd, ready, max < 256 ? max : 256, timeout);
    for (int i = 0; i < n; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return n;
}
