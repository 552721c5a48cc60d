/*
 * weir.h — the C (and C++) SDK for weir plugins.
 *
 * A UDF is a plain C function called once per row with a `weir_row`: it reads its arguments with
 * weir_arg_* and sets its result with weir_return_* (scalar functions) or adds output rows with
 * weir_emit + weir_out_* (table functions). The SDK runs the loop over the batch, reads and
 * writes the columns in Arrow's layout and fills the WIT records (wit/plugin.wit); the
 * signatures live in weir-plugin.yaml, from which `weir plugin build` generates the function
 * table and the bindings, compiles with clang for wasm32-wasi and makes the component.
 *
 *     #include "weir.h"
 *
 *     // weir-plugin.yaml: functions: { to_eur: { args: [int64], returns: float64 } }
 *     void to_eur(weir_row *row) {
 *         weir_return_f64(row, (double)weir_arg_i64(row, 0) * 0.908);
 *     }
 *
 * NULLs: a function is not called for a row with a NULL argument (the result is NULL) unless
 * its signature says `nulls: true`; then weir_arg_is_null tells. A function that sets no result
 * returns NULL. weir_fail rejects the row with a message (the host applies the step's error
 * policy: fail, skip or dead-letter).
 *
 * Strings and bytes passed in are views into the batch, valid during the call; strings and
 * bytes passed out are copied.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Column types, as named in weir-plugin.yaml. */
typedef enum weir_type {
    WEIR_BOOLEAN,
    WEIR_INT32,
    WEIR_INT64,
    WEIR_UINT64,
    WEIR_FLOAT32,
    WEIR_FLOAT64,
    WEIR_UTF8,
    WEIR_BINARY,
    WEIR_DATE32,
    WEIR_TIMESTAMP_S,
    WEIR_TIMESTAMP_MS,
    WEIR_TIMESTAMP_US,
    WEIR_TIMESTAMP_NS,
} weir_type;

/* A UTF-8 string (not NUL-terminated) or a byte string. */
typedef struct weir_str {
    const char *ptr;
    size_t len;
} weir_str;

typedef struct weir_bytes {
    const uint8_t *ptr;
    size_t len;
} weir_bytes;

/* One argument column's buffers (Arrow layout). */
typedef struct weir_column_view {
    const uint8_t *validity; /* NULL: the column has no NULLs */
    const void *values;      /* fixed-width values, packed bits (boolean), or var-width bytes */
    const int32_t *offsets;  /* utf8 and binary: rows + 1 offsets into `values` */
} weir_column_view;

/* The row being processed. The fields are read by the inline accessors below; treat them as
 * private (weir.c owns the rest of the call's state behind `state`). */
typedef struct weir_row {
    uint32_t index;
    bool failed;
    weir_type result_type;       /* scalar functions */
    void *result_values;         /* fixed-width result slots, or NULL */
    uint8_t *result_validity;
    const weir_column_view *args;
    struct weir_row_state *state;
} weir_row;

typedef void (*weir_row_fn)(weir_row *row);

/* A generated loop calling one function directly over rows of a batch (so the compiler can
 * inline the function): NULL rows are skipped when `check_nulls`. */
typedef void (*weir_loop_fn)(weir_row *row, uint32_t rows, bool check_nulls);

/* One function of the plugin (the table is generated from weir-plugin.yaml). */
typedef struct weir_function {
    const char *name;
    const char *description;
    weir_row_fn fn;
    const weir_type *args;
    unsigned arg_count;
    weir_type returns;                /* scalar functions */
    const char *const *output_names;  /* table functions */
    const weir_type *output_types;
    unsigned output_count;
    bool nulls; /* called for rows with NULL arguments too */
    weir_loop_fn loop; /* scalar functions with fixed-width results */
} weir_function;

/* ---- arguments of the current row (inline: a UDF's row costs a few instructions) ----------- */

static inline uint32_t weir_row_index(const weir_row *row) { return row->index; }

static inline bool weir_arg_is_null(const weir_row *row, unsigned arg) {
    const uint8_t *validity = row->args[arg].validity;
    return validity != NULL && !((validity[row->index >> 3] >> (row->index & 7)) & 1);
}

static inline bool weir_arg_bool(const weir_row *row, unsigned arg) {
    const uint8_t *bits = (const uint8_t *)row->args[arg].values;
    return (bits[row->index >> 3] >> (row->index & 7)) & 1;
}

/* int32 and date32 */
static inline int32_t weir_arg_i32(const weir_row *row, unsigned arg) { return ((const int32_t *)row->args[arg].values)[row->index]; }
/* int64 and timestamps */
static inline int64_t weir_arg_i64(const weir_row *row, unsigned arg) { return ((const int64_t *)row->args[arg].values)[row->index]; }
static inline uint64_t weir_arg_u64(const weir_row *row, unsigned arg) { return ((const uint64_t *)row->args[arg].values)[row->index]; }
static inline float weir_arg_f32(const weir_row *row, unsigned arg) { return ((const float *)row->args[arg].values)[row->index]; }
static inline double weir_arg_f64(const weir_row *row, unsigned arg) { return ((const double *)row->args[arg].values)[row->index]; }

static inline weir_str weir_arg_str(const weir_row *row, unsigned arg) {
    const weir_column_view *column = &row->args[arg];
    int32_t start = column->offsets[row->index], end = column->offsets[row->index + 1];
    weir_str out = {(const char *)column->values + start, (size_t)(end - start)};
    return out;
}

static inline weir_bytes weir_arg_bytes(const weir_row *row, unsigned arg) {
    weir_str text = weir_arg_str(row, arg);
    weir_bytes out = {(const uint8_t *)text.ptr, text.len};
    return out;
}

/* ---- scalar results ------------------------------------------------------------------------ */

/* Sets a result whose type is not the signature's exact fixed-width type (a timestamp through
 * weir_return_i64, ...), or rejects the row when the types do not fit. */
void weir__return_other(weir_row *row, weir_type type, const void *value);

#define WEIR__RETURN_FIXED(suffix, ctype, wtype)                                                  \
    static inline void weir_return_##suffix(weir_row *row, ctype value) {                         \
        if (row->result_type == (wtype) && row->result_values != NULL && !row->failed) {         \
            ((ctype *)row->result_values)[row->index] = value;                                    \
            row->result_validity[row->index >> 3] |= (uint8_t)(1u << (row->index & 7));          \
        } else {                                                                                  \
            weir__return_other(row, (wtype), &value);                                             \
        }                                                                                         \
    }

WEIR__RETURN_FIXED(bool, bool, WEIR_BOOLEAN)
WEIR__RETURN_FIXED(i32, int32_t, WEIR_INT32)
WEIR__RETURN_FIXED(i64, int64_t, WEIR_INT64)
WEIR__RETURN_FIXED(u64, uint64_t, WEIR_UINT64)
WEIR__RETURN_FIXED(f32, float, WEIR_FLOAT32)
WEIR__RETURN_FIXED(f64, double, WEIR_FLOAT64)

void weir_return_null(weir_row *row);
void weir_return_str(weir_row *row, const char *ptr, size_t len);
void weir_return_cstr(weir_row *row, const char *text);
void weir_return_bytes(weir_row *row, const uint8_t *ptr, size_t len);

/* Rejects the row: its result is NULL and the host applies the step's error policy. */
void weir_fail(weir_row *row, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* ---- table outputs ------------------------------------------------------------------------- */

/* Starts a new output row for the current input row; its columns are NULL until set. */
void weir_emit(weir_row *row);
void weir_out_null(weir_row *row, unsigned column);
void weir_out_bool(weir_row *row, unsigned column, bool value);
void weir_out_i32(weir_row *row, unsigned column, int32_t value);
void weir_out_i64(weir_row *row, unsigned column, int64_t value);
void weir_out_u64(weir_row *row, unsigned column, uint64_t value);
void weir_out_f32(weir_row *row, unsigned column, float value);
void weir_out_f64(weir_row *row, unsigned column, double value);
void weir_out_str(weir_row *row, unsigned column, const char *ptr, size_t len);
void weir_out_bytes(weir_row *row, unsigned column, const uint8_t *ptr, size_t len);

/* ---- host ---------------------------------------------------------------------------------- */

/* A message in the host's log, attributed to this plugin (info level). */
void weir_log(const char *message);
/* Adds to a counter in the host's metrics (per batch, not per row: it is a host call). */
void weir_counter_add(const char *name, uint64_t value);
void weir_gauge_set(const char *name, double value);

/* ---- generated by `weir plugin build` ------------------------------------------------------ */

extern const weir_function weir_functions[];
extern const unsigned weir_function_count;
extern const char *const weir_plugin_name;
extern const char *const weir_plugin_version;
extern const char *const weir_plugin_description;

#ifdef __cplusplus
}
#endif

/* `weir plugin build` generates the prototypes of the manifest's functions, so that a function
 * written with another signature (`double add1(double)`) is a compile error at its definition. */
#if defined(__has_include)
#if __has_include("weir_prototypes.h")
#include "weir_prototypes.h"
#endif
#endif

#endif /* WEIR_H */
