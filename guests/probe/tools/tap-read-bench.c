// Reading MTU-sized frames from a TAP: one readv per frame vs io_uring (BENCHMARKS.md, NICs, Run J).
//
// Measures what the NIC's receive path would gain from batching its TAP reads with io_uring: frames
// per second and the reader's CPU time per frame (getrusage) for
//   readv        one readv(2) per frame (what domus-vmm's device thread does), NIOV iovecs
//   read-copy    one read(2) per frame into one host buffer, then memcpy into NIOV ranges elsewhere
//   uring-read   BATCH IORING_OP_READ SQEs per io_uring_enter, RWF_NOWAIT (EAGAIN ends the pass)
//   uring-readv  the same with IORING_OP_READV and NIOV iovecs
//   multishot    one IORING_OP_READ_MULTISHOT with a 64-buffer provided-buffer ring
// Each pass reads until the TAP is empty (at most 256 frames), then the reader sleeps HOLD_US
// (domus-vmm's receive hold) or, when the pass found nothing, polls. Every frame the sender makes
// carries a sequence number; `misorder` counts IPv4 frames that arrived out of order.
//
// Run as root inside a network namespace that holds a TAP `t0` (tap-read-bench.sh makes one):
//   tap-read-bench recv MODE SECONDS [BATCH [HOLD_US]]     (env NIOV=iovecs per read, default 8;
//                                                           DEFER=1: DEFER_TASKRUN ring;
//                                                           NOWAIT0=1: no RWF_NOWAIT, O_NONBLOCK only)
//   tap-read-bench send SECONDS                             (AF_PACKET, PACKET_QDISC_BYPASS,
//                                                           64 1514-byte frames a sendmmsg)
// Build: cc -O2 -o tap-read-bench tap-read-bench.c -luring   (Debian: liburing-dev)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FRAME 2048
#define HDR 12 /* virtio_net_hdr_v1, as domus-vmm sets it */
#define SEQ_OFF (HDR + 42)
#define NBUF 64
#define OP_READ_MULTISHOT 49 /* IORING_OP_READ_MULTISHOT (Linux 6.7+), newer than liburing 2.3 */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static double cpu(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}
static unsigned long long frames, bytes, misorder, eagains, enters, polls;
static unsigned last_seq;
static int have_seq;
static void check(const unsigned char *f, int n) {
    frames++;
    bytes += n;
    if (n < SEQ_OFF + 4 || f[HDR + 12] != 0x08 || f[HDR + 13] != 0x00)
        return; /* not one of ours (IPv6 neighbour discovery after link up) */
    unsigned s;
    memcpy(&s, f + SEQ_OFF, 4);
    if (have_seq && (int)(s - last_seq) <= 0)
        misorder++;
    last_seq = s;
    have_seq = 1;
}
static void wait_readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    polls++;
    poll(&p, 1, 100);
}

static int send_frames(double secs) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP)), one = 1, sndbuf = 8 << 20;
    if (s < 0) { perror("socket"); return 1; }
    setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = if_nametoindex("t0"), .sll_halen = 6};
    static unsigned char f[64][14 + 20 + 8 + 1472];
    static struct iovec io[64];
    struct mmsghdr m[64];
    for (int i = 0; i < 64; i++) {
        unsigned char *p = f[i];
        memset(p, 0xaa, 6);
        p[6] = 2; p[12] = 8; p[13] = 0;
        struct iphdr *ip = (void *)(p + 14);
        ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = 17; ip->tot_len = htons(1500);
        ip->saddr = htonl(0x0a000001); ip->daddr = htonl(0x0a000002);
        io[i] = (struct iovec){p, sizeof f[i]};
        m[i].msg_hdr = (struct msghdr){.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &io[i], .msg_iovlen = 1};
    }
    memcpy(to.sll_addr, f[0], 6);
    unsigned seq = 0;
    double end = now() + secs;
    while (now() < end) {
        for (int i = 0; i < 64; i++) {
            unsigned v = seq + i;
            memcpy(f[i] + 42, &v, 4);
        }
        int n = sendmmsg(s, m, 64, 0);
        if (n > 0) seq += n;
    }
    printf("sent %u\n", seq);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "send"))
        return send_frames(atof(argv[2]));
    if (argc < 4 || strcmp(argv[1], "recv")) {
        fprintf(stderr, "usage: %s recv MODE SECONDS [BATCH [HOLD_US]] | send SECONDS\n", argv[0]);
        return 2;
    }
    const char *mode = argv[2];
    double secs = atof(argv[3]);
    int batch = argc > 4 ? atoi(argv[4]) : 32, hold = argc > 5 ? atoi(argv[5]) : 200;
    int niov = getenv("NIOV") ? atoi(getenv("NIOV")) : 8;
    if (batch < 1 || batch > NBUF || niov < 1 || niov > 8) { fprintf(stderr, "BATCH 1..64, NIOV 1..8\n"); return 2; }
    int copy = !strcmp(mode, "read-copy");
    int readv_mode = !strcmp(mode, "readv") || copy, ring_rw = !strcmp(mode, "uring-read") || !strcmp(mode, "uring-readv");
    int multishot = !strcmp(mode, "multishot");
    if (!readv_mode && !ring_rw && !multishot) { fprintf(stderr, "unknown mode %s\n", mode); return 2; }

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "t0");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF t0"); return 1; }
    int hs = HDR;
    ioctl(fd, TUNSETVNETHDRSZ, &hs);

    static unsigned char buf[NBUF][FRAME + HDR];
    struct iovec iovs[NBUF][8];
    for (int i = 0; i < NBUF; i++) { /* NIOV ranges per buffer, like guest ranges + scratch */
        int per = (FRAME + HDR) / niov;
        for (int k = 0; k < niov; k++)
            iovs[i][k] = (struct iovec){buf[i] + k * per, k == niov - 1 ? (FRAME + HDR) - k * per : per};
    }
    struct io_uring ring;
    struct io_uring_buf_ring *br = NULL;
    if (!readv_mode) {
        struct io_uring_params p = {0};
        if (getenv("DEFER")) p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        int r = io_uring_queue_init_params(256, &ring, &p);
        if (r < 0) { fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-r)); return 1; }
    }
    if (multishot) {
        br = mmap(NULL, NBUF * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        io_uring_buf_ring_init(br);
        struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUF, .bgid = 0};
        int r = io_uring_register_buf_ring(&ring, &reg, 0);
        if (r < 0) { fprintf(stderr, "buffer ring: %s\n", strerror(-r)); return 1; }
        for (int i = 0; i < NBUF; i++)
            io_uring_buf_ring_add(br, buf[i], FRAME + HDR, i, io_uring_buf_ring_mask(NBUF), i);
        io_uring_buf_ring_advance(br, NBUF);
    }
    int armed = 0, nowait = getenv("NOWAIT0") ? 0 : RWF_NOWAIT;
    double t0 = now(), c0 = cpu(), end = t0 + secs;
    while (now() < end) {
        int got = 0;
        if (readv_mode) {
            while (got < 256) {
                ssize_t n = copy ? read(fd, buf[1], FRAME + HDR) : readv(fd, iovs[0], niov);
                if (n < 0) {
                    if (errno == EAGAIN) break;
                    perror("readv");
                    return 1;
                }
                if (copy) /* the frame's bytes into the ranges a readv would have filled */
                    for (int k = 0, off = 0; k < niov && off < n; off += iovs[0][k].iov_len, k++)
                        memcpy(iovs[0][k].iov_base, buf[1] + off,
                               n - off < (ssize_t)iovs[0][k].iov_len ? (size_t)(n - off) : iovs[0][k].iov_len);
                check(buf[0], n);
                got++;
            }
        } else if (ring_rw) {
            int stop = 0;
            while (!stop && got < 256) {
                for (int i = 0; i < batch; i++) {
                    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                    if (mode[10] == 'v')
                        io_uring_prep_readv(s, fd, iovs[i], niov, 0);
                    else
                        io_uring_prep_read(s, fd, buf[i], FRAME + HDR, 0);
                    s->rw_flags = nowait;
                    s->user_data = i;
                }
                enters++;
                int r = io_uring_submit_and_wait(&ring, batch);
                if (r < 0) { fprintf(stderr, "io_uring_enter: %s\n", strerror(-r)); return 1; }
                for (int seen = 0; seen < batch; seen++) {
                    struct io_uring_cqe *c;
                    if (io_uring_wait_cqe(&ring, &c) < 0) return 1;
                    int i = (int)c->user_data, res = c->res;
                    if (i != seen) fprintf(stderr, "completion %d came as the %d-th\n", i, seen);
                    if (res >= 0) {
                        check(buf[i], res);
                        got++;
                    } else if (res == -EAGAIN) {
                        eagains++;
                        stop = 1;
                    } else {
                        fprintf(stderr, "read: %s\n", strerror(-res));
                        return 1;
                    }
                    io_uring_cqe_seen(&ring, c);
                }
            }
        } else {
            if (!armed) {
                struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                io_uring_prep_rw(OP_READ_MULTISHOT, s, fd, NULL, 0, 0);
                s->flags |= IOSQE_BUFFER_SELECT;
                s->buf_group = 0;
                armed = 1;
            }
            enters++;
            io_uring_submit_and_wait(&ring, 1);
            struct io_uring_cqe *c;
            unsigned head, cnt = 0;
            io_uring_for_each_cqe(&ring, head, c) {
                cnt++;
                if (c->res >= 0 && (c->flags & IORING_CQE_F_BUFFER)) {
                    int b = c->flags >> IORING_CQE_BUFFER_SHIFT;
                    check(buf[b], c->res);
                    got++;
                    io_uring_buf_ring_add(br, buf[b], FRAME + HDR, b, io_uring_buf_ring_mask(NBUF), 0);
                    io_uring_buf_ring_advance(br, 1);
                } else if (c->res < 0 && c->res != -ENOBUFS) {
                    fprintf(stderr, "multishot read: %s\n", strerror(-c->res));
                    return 1;
                }
                if (!(c->flags & IORING_CQE_F_MORE)) armed = 0; /* ended (ENOBUFS): arm again */
            }
            io_uring_cq_advance(&ring, cnt);
            if (got && hold) usleep(hold);
            continue;
        }
        if (got == 0)
            wait_readable(fd);
        else if (hold)
            usleep(hold);
    }
    double dt = now() - t0, dc = cpu() - c0;
    printf("%-11s batch=%d niov=%d hold=%d: %.0f frames/s, %.0f MB/s, cpu %.1f%%, %.0f ns cpu/frame, "
           "misorder=%llu eagain=%llu enters=%llu polls=%llu\n",
           mode, batch, niov, hold, frames / dt, bytes / dt / 1e6, 100 * dc / dt, frames ? dc / frames * 1e9 : 0,
           misorder, eagains, enters, polls);
    return 0;
}
