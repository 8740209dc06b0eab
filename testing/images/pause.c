/* The pod sandbox ("pause") container of the local cluster's image
 * registry.k8s.io/pause:3.10, built by testing/cluster/images.sh with
 * `gcc -static -O2`. It holds the pod's namespaces: it sleeps until SIGINT or
 * SIGTERM and then exits 0. As PID 1 of a pod that shares its PID namespace it
 * is the parent of every orphaned process there, so it reaps them on SIGCHLD.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0); /* async-signal-safe, unlike exit() */
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static int handle(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
    puts("pause (packet-capture testing/images/pause.c)");
    return 0;
  }
  if (getpid() != 1) {
    fputs("pause: warning: not running as PID 1\n", stderr);
  }
  if (handle(SIGINT, on_stop, 0) != 0 || handle(SIGTERM, on_stop, 0) != 0 ||
      handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) != 0) {
    perror("pause: sigaction");
    return 1;
  }
  /* Children that ended before the handler was installed. */
  on_child(SIGCHLD);
  for (;;) {
    pause();
  }
}
