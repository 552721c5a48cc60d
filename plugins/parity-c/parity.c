/* The cross-language parity functions in C (see plugins/parity-rust). */
#include <stdlib.h>
#include <string.h>

#include "weir.h"

void dollar_to_euro(weir_row *row) {
    weir_return_f64(row, (double)weir_arg_i64(row, 0) * 0.908);
}

void exclaim(weir_row *row) {
    weir_str text = weir_arg_str(row, 0);
    char *out = malloc(text.len + 1);
    memcpy(out, text.ptr, text.len);
    out[text.len] = '!';
    weir_return_str(row, out, text.len + 1);
    free(out);
}

void or_default(weir_row *row) {
    if (weir_arg_is_null(row, 0)) {
        weir_return_cstr(row, "(none)");
    } else {
        weir_str text = weir_arg_str(row, 0);
        weir_return_str(row, text.ptr, text.len);
    }
}

static int is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

void slug(weir_row *row) {
    weir_str text = weir_arg_str(row, 0);
    char *out = malloc(text.len + 1);
    size_t len = 0;
    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        if (c >= 0x80 && (c & 0xC0) == 0x80) continue; /* a UTF-8 continuation: same character */
        if (is_alnum(c)) {
            out[len++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
        } else if (len > 0 && out[len - 1] != '-') {
            out[len++] = '-';
        }
    }
    if (len > 0 && out[len - 1] == '-') len--;
    if (len == 0) {
        weir_fail(row, "no letters or digits to make a slug of");
    } else {
        weir_return_str(row, out, len);
    }
    free(out);
}

/* The greatest common divisor by Euclid's loop (arrow-udf's benchmark function). */
void euclid_gcd(weir_row *row) {
    int64_t a = weir_arg_i64(row, 0), b = weir_arg_i64(row, 1);
    while (b != 0) {
        int64_t t = b;
        b = a % b;
        a = t;
    }
    weir_return_i64(row, a);
}

/* `gcd` over int32. */
void euclid_gcd32(weir_row *row) {
    int32_t a = weir_arg_i32(row, 0), b = weir_arg_i32(row, 1);
    while (b != 0) {
        int32_t t = b;
        b = a % b;
        a = t;
    }
    weir_return_i32(row, a);
}
