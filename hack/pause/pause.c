/* The pod sandbox's process: sleeps until SIGTERM/SIGINT, reaping zombies (as Kubernetes' pause). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
    struct sigaction s = {0}, r = {0};
    s.sa_handler = stop; sigaction(SIGTERM, &s, NULL); sigaction(SIGINT, &s, NULL);
    r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
    for (;;) pause();
}
