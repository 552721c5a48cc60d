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

/* The row being processed: its arguments and where its result goes. */
typedef struct weir_row weir_row;

typedef void (*weir_row_fn)(weir_row *row);

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
} weir_function;

/* ---- arguments of the current row ---------------------------------------------------------- */

/* The row's index in the batch. */
uint32_t weir_row_index(const weir_row *row);
bool weir_arg_is_null(const weir_row *row, unsigned arg);
bool weir_arg_bool(const weir_row *row, unsigned arg);
int32_t weir_arg_i32(const weir_row *row, unsigned arg);  /* int32, date32 */
int64_t weir_arg_i64(const weir_row *row, unsigned arg);  /* int64, timestamps */
uint64_t weir_arg_u64(const weir_row *row, unsigned arg);
float weir_arg_f32(const weir_row *row, unsigned arg);
double weir_arg_f64(const weir_row *row, unsigned arg);
weir_str weir_arg_str(const weir_row *row, unsigned arg);
weir_bytes weir_arg_bytes(const weir_row *row, unsigned arg);

/* ---- scalar results ------------------------------------------------------------------------ */

void weir_return_null(weir_row *row);
void weir_return_bool(weir_row *row, bool value);
void weir_return_i32(weir_row *row, int32_t value);
void weir_return_i64(weir_row *row, int64_t value);
void weir_return_u64(weir_row *row, uint64_t value);
void weir_return_f32(weir_row *row, float value);
void weir_return_f64(weir_row *row, double value);
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

#endif /* WEIR_H */
