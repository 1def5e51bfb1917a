/* The no-fork policy seen from C, run as a daemon (tools/reliability/nofork.rs):
 *
 *   nofork OUT
 *
 * tries every way libc and the kernel offer to create a process, and threads, and writes one
 * line per way to OUT: "NAME: allowed", "NAME: refused ERRNO-NAME" or "NAME: works". A child
 * that does get created exits at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static FILE *out;

static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    default: return strerror(e);
    }
}

/* pid < 0: refused with errno; pid == 0: the child, which exits; pid > 0: reaped. */
static void report_pid(const char *name, long pid, int err) {
    if (pid == 0)
        _exit(0);
    if (pid < 0) {
        fprintf(out, "%s: refused %s\n", name, errname(err));
        return;
    }
    waitpid((pid_t)pid, NULL, 0);
    fprintf(out, "%s: allowed\n", name);
}

static void *thread_main(void *arg) {
    *(int *)arg += 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    out = fopen(argv[1], "w");
    if (!out)
        return 2;
    setvbuf(out, NULL, _IONBF, 0);

    long pid = fork();
    report_pid("fork()", pid, errno);

    pid = vfork();
    report_pid("vfork()", pid, errno);

    pid = syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL);
    report_pid("clone(SIGCHLD)", pid, errno);

    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &args, sizeof args);
    report_pid("clone3()", pid, errno);

    pid_t spawned;
    char *true_argv[] = {"true", NULL};
    int rc = posix_spawn(&spawned, "/bin/true", NULL, NULL, true_argv, environ);
    if (rc == 0) {
        waitpid(spawned, NULL, 0);
        fprintf(out, "posix_spawn(): allowed\n");
    } else {
        fprintf(out, "posix_spawn(): refused %s\n", errname(rc));
    }

    errno = 0;
    rc = system("true");
    if (rc == -1)
        fprintf(out, "system(): refused %s\n", errname(errno));
    else if (WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
        fprintf(out, "system(): allowed\n");
    else if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
        fprintf(out, "system(): refused (status 127: the shell could not be started)\n");
    else
        fprintf(out, "system(): refused (status %d)\n", rc);

    /* Threads are clone(CLONE_THREAD | ...): they must keep working. */
    int counter = 0;
    pthread_t t[4];
    int made = 0;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, thread_main, &counter) == 0)
            made++;
    for (int i = 0; i < made; i++)
        pthread_join(t[i], NULL);
    if (made == 4)
        fprintf(out, "pthread_create() x4: works\n");
    else
        fprintf(out, "pthread_create() x4: broken (%d of 4)\n", made);
    fclose(out);
    return 0;
}
