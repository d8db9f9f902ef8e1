/*
 * The pod sandbox's init process, built from source for the CRI e2e
 * (e2e/images/build.sh): it holds the pod's namespaces and does nothing
 * else. It is PID 1 of the pod's PID namespace, and the kernel delivers
 * no signal to such an init unless it installed a handler, so SIGTERM and
 * SIGINT (StopPodSandbox) must be caught explicitly or the runtime waits
 * out its timeout and kills it. Orphans of the pod are reparented to it,
 * so it reaps them. Linked statically: the image is FROM scratch.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void on_child(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("e2ecri-pause (csum-offload e2e)");
        return 0;
    }
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&stop.sa_mask);
    sigemptyset(&child.sa_mask);
    if (sigaction(SIGTERM, &stop, NULL) || sigaction(SIGINT, &stop, NULL) ||
        sigaction(SIGCHLD, &child, NULL)) {
        perror("pause: sigaction");
        return 1;
    }
    if (getpid() != 1)
        fputs("pause: warning: not PID 1 of its namespace\n", stderr);
    for (;;)
        pause();
}
