/* The floor of a chained plugin under a runtime: a static binary that does
 * the least any chained CNI plugin must do. ADD and CHECK read the config
 * from stdin; ADD prints its "prevResult" object back (found by brace
 * matching, which is enough for the configs the benchmark writes); every
 * other command prints nothing. podstart.sh puts it in the chain where
 * csum-offload would go, to tell the runtime's own per-plugin cost from
 * csum-offload's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    static char buf[1 << 20];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(0, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    const char *cmd = getenv("CNI_COMMAND");
    if (!cmd || strcmp(cmd, "ADD") != 0)
        return 0;
    char *p = strstr(buf, "\"prevResult\"");
    if (!p || !(p = strchr(p, '{')))
        return 1;
    int depth = 0, in_string = 0;
    char *q = p;
    for (; *q; q++) {
        if (in_string) {
            if (*q == '\\' && q[1])
                q++;
            else if (*q == '"')
                in_string = 0;
        } else if (*q == '"') {
            in_string = 1;
        } else if (*q == '{') {
            depth++;
        } else if (*q == '}' && --depth == 0) {
            break;
        }
    }
    if (!*q)
        return 1;
    fwrite(p, 1, (size_t)(q - p + 1), stdout);
    return 0;
}
