/* What a container's process may do, one line per check: "NAME: allowed" or
 * "NAME: denied (ERRNO)". The same static binary runs under Strata, runc and podman.
 * With arguments, it execs them after printing its own identity (a set-user-ID probe). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void status_lines(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) || !strncmp(line, "Seccomp:", 8) ||
            !strncmp(line, "Uid:", 4))
            fputs(line, stdout);
    if (f) fclose(f);
}

static void report(const char *name, int ok) {
    if (ok) printf("%s: allowed\n", name);
    else printf("%s: denied (%s)\n", name, strerror(errno));
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return 0;
    int ok = write(fd, text, strlen(text)) >= 0;
    close(fd);
    return ok;
}

/* Reading yields bytes: a masked file reads as empty. */
static int read_some(const char *path) {
    char buf[64];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0) { errno = n == 0 ? ENODATA : errno; return 0; }
    return 1;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        status_lines();
        fflush(stdout);
        execv(argv[1], argv + 1);
        perror("execv");
        return 127;
    }
    status_lines();
    mkdir("/tmp/probe-mnt", 0755);
    report("mount tmpfs", mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL) == 0);
    report("mount cgroup (release_agent)", mount("cgroup", "/tmp/probe-mnt", "cgroup", 0, "memory") == 0 ||
                                               mount("cgroup", "/tmp/probe-mnt", "cgroup", 0, "none,name=probe") == 0);
    report("write release_agent", write_file("/sys/fs/cgroup/memory/release_agent", "/x"));
    report("remount /sys rw", mount(NULL, "/sys", NULL, MS_REMOUNT, NULL) == 0);
    pid_t p = fork();
    if (p == 0) _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
    int st = 0;
    waitpid(p, &st, 0);
    errno = WEXITSTATUS(st);
    report("unshare user namespace", WEXITSTATUS(st) == 0);
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1) >= 0);
    report("read /proc/keys", read_some("/proc/keys"));
    report("read /proc/kcore", read_some("/proc/kcore"));
    report("write /proc/sys/kernel/core_pattern", write_file("/proc/sys/kernel/core_pattern", "|/x"));
    report("write /proc/sysrq-trigger", write_file("/proc/sysrq-trigger", "h"));
    report("write /sys/kernel/uevent_helper", write_file("/sys/kernel/uevent_helper", "/x"));
    unlink("/tmp/probe-sda");
    /* Creating a node is not using it: the check is whether both work. */
    report("mknod then open a block device",
           mknod("/tmp/probe-sda", S_IFBLK | 0600, makedev(8, 0)) == 0 && open("/tmp/probe-sda", O_RDONLY) >= 0);
    report("open /dev/kmsg", open("/dev/kmsg", O_RDONLY) >= 0);
    p = fork();
    if (p == 0) {
        /* ptrace of pid 1 from a child: seize (no stop), detached when the child exits. */
        int ok = ptrace(PTRACE_SEIZE, 1, 0, 0) == 0;
        _exit(ok ? 0 : errno);
    }
    waitpid(p, &st, 0);
    errno = WEXITSTATUS(st);
    report("ptrace pid 1", WEXITSTATUS(st) == 0);
    report("open /proc/1/exe for writing", open("/proc/1/exe", O_WRONLY) >= 0);
    report("sethostname", sethostname("probe", 5) == 0);
    return 0;
}
