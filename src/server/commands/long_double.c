/* INCRBYFLOAT's arithmetic exactly as Redis does it: the platform's C `long double` (the x87
 * 80-bit format on x86-64), read with the C library's strtold and printed with "%.17Lf" minus
 * trailing zeros. string2ld below is Redis's (util.c), and the printing is ld2string's
 * LD_STR_HUMAN mode; keeping them in C keeps them the very same code paths, so the replies are
 * Redis's byte for byte on the same platform. Called from long_double.rs. */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS: no number text is this long or longer. */
#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* Redis's string2ld: 1 and the value in *dp when the whole of s is a number strtold reads
 * without overflow or underflow to zero (and not NaN), else 0. */
static int string2ld(const char *s, size_t slen, long double *dp) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;

    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';

    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' || (size_t)(eptr - buf) != slen ||
        (errno == ERANGE &&
         (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;

    *dp = value;
    return 1;
}

/* current (NULL for a missing key, which counts as 0) plus incr, printed into out as
 * ld2string(.., LD_STR_HUMAN) does. Returns the text's length, or
 *   -1 when current or incr is not a number string2ld accepts,
 *   -2 when the sum is NaN or infinite,
 *   -3 when out (outlen bytes) cannot hold the text. */
long mapcache_incrbyfloat(const char *current, size_t current_len, const char *incr,
                          size_t incr_len, char *out, size_t outlen) {
    long double value = 0, by;
    int l;

    if ((current != NULL && !string2ld(current, current_len, &value)) ||
        !string2ld(incr, incr_len, &by))
        return -1;
    value += by;
    if (isnan(value) || isinf(value)) return -2;

    l = snprintf(out, outlen, "%.17Lf", value);
    if (l < 0 || (size_t)l + 1 > outlen) return -3;
    /* Trailing zeros after the point go, and the point too when nothing follows it. */
    if (memchr(out, '.', (size_t)l) != NULL) {
        char *p = out + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        l = 1;
    }
    return l;
}
