/* The spawn floor of the benchmark: a static binary that does what every
 * CNI plugin must do at the least (read its config from stdin to EOF) and
 * nothing else. Subtracting its median from a plugin's leaves what the
 * plugin itself costs. */
#include <unistd.h>

int main(void) {
    char buf[4096];
    while (read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}
