/*
 * weir.c — the C SDK's implementation: the `describe` and `call` exports over the function table
 * `weir plugin build` generates, the row loop, column reading and writing (Arrow layout) and
 * the row errors. Compiled with the wit-bindgen C bindings of the plugin's world
 * (WEIR_WORLD_SCALAR_UDF or WEIR_WORLD_TABLE_UDF).
 *
 * Ownership follows wit-bindgen's C conventions: arguments belong to the callee (freed here at
 * the end of a call), and everything returned is malloc'd and freed by the generated
 * post-return functions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

#if defined(WEIR_WORLD_SCALAR_UDF)
#include "scalar_udf.h"
#define WEIR_W(name) scalar_udf_##name
#define WEIR_EXPORT(name) exports_weir_plugin_scalar_##name
void __component_type_object_force_link_scalar_udf(void) {}
#elif defined(WEIR_WORLD_TABLE_UDF)
#include "table_udf.h"
#define WEIR_W(name) table_udf_##name
#define WEIR_EXPORT(name) exports_weir_plugin_table_##name
void __component_type_object_force_link_table_udf(void) {}
#else
#error "compile with -DWEIR_WORLD_SCALAR_UDF or -DWEIR_WORLD_TABLE_UDF (weir plugin build does)"
#endif

typedef weir_plugin_types_column_t column_t;
typedef WEIR_W(string_t) string_t;

/* ---- memory ------------------------------------------------------------------------------- */

static void *checked(void *ptr) {
    if (ptr == NULL) abort(); /* out of memory: the host sees a trap and applies the policy */
    return ptr;
}

static void *grow(void *ptr, size_t *capacity, size_t needed, size_t element) {
    if (needed <= *capacity) return ptr;
    size_t next = *capacity ? *capacity * 2 : 64;
    while (next < needed) next *= 2;
    *capacity = next;
    return checked(realloc(ptr, next * element));
}

static string_t owned_string(const char *text, size_t len) {
    string_t out = {NULL, len};
    out.ptr = checked(malloc(len ? len : 1));
    memcpy(out.ptr, text, len);
    return out;
}

static string_t owned_cstring(const char *text) {
    return owned_string(text, strlen(text));
}

/* ---- types ------------------------------------------------------------------------------- */

/* The `column-values` case that carries a column of `type`. */
static uint8_t values_tag(weir_type type) {
    switch (type) {
        case WEIR_BOOLEAN: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_BOOLEAN;
        case WEIR_INT32: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_INT32;
        case WEIR_INT64: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_INT64;
        case WEIR_UINT64: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_UINT64;
        case WEIR_FLOAT32: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_FLOAT32;
        case WEIR_FLOAT64: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_FLOAT64;
        case WEIR_UTF8: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_UTF8;
        case WEIR_BINARY: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_BINARY;
        case WEIR_DATE32: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_DATE32;
        default: return WEIR_PLUGIN_TYPES_COLUMN_VALUES_TIMESTAMP;
    }
}

/* The weir-plugin.yaml name of a type, for messages. */
static const char *type_name(weir_type type) {
    static const char *const names[] = {
        "boolean", "int32", "int64", "uint64", "float32", "float64", "utf8", "binary", "date32",
        "timestamp_s", "timestamp_ms", "timestamp_us", "timestamp_ns",
    };
    return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "an unknown type";
}

/* The weir_return_* / weir_out_* suffix that sets a column of `type`. */
static const char *setter_suffix(weir_type type) {
    static const char *const suffixes[] = {
        "bool", "i32", "i64", "u64", "f32", "f64", "str", "bytes", "i32", "i64", "i64", "i64", "i64",
    };
    return (unsigned)type < sizeof suffixes / sizeof suffixes[0] ? suffixes[type] : "?";
}

/* Whether a value set as `value` (the weir_return_* / weir_out_* variant) fits a column of
 * `column`: the same type, a timestamp set as int64, a date32 set as int32. */
static bool accepts(weir_type column, weir_type value) {
    return column == value || (value == WEIR_INT64 && column >= WEIR_TIMESTAMP_S) ||
           (value == WEIR_INT32 && column == WEIR_DATE32);
}

/* ---- column builders ---------------------------------------------------------------------- */

typedef struct builder {
    weir_type type;
    size_t rows;          /* rows so far */
    size_t capacity;      /* rows allocated */
    uint8_t *validity;    /* one bit per row */
    bool any_null;
    void *fixed;          /* fixed-width values */
    int32_t *offsets;     /* var-width: rows + 1 */
    uint8_t *data;
    size_t data_len, data_capacity;
} builder;

static size_t fixed_width(weir_type type) {
    switch (type) {
        case WEIR_INT32:
        case WEIR_DATE32:
        case WEIR_FLOAT32: return 4;
        case WEIR_BOOLEAN: return 1; /* one byte per row while building, packed at the end */
        case WEIR_UTF8:
        case WEIR_BINARY: return 0;
        default: return 8;
    }
}

static bool is_var(weir_type type) {
    return type == WEIR_UTF8 || type == WEIR_BINARY;
}

static void builder_init(builder *b, weir_type type, size_t capacity) {
    memset(b, 0, sizeof *b);
    b->type = type;
    b->capacity = capacity ? capacity : 16;
    b->validity = checked(calloc((b->capacity + 7) / 8, 1));
    if (is_var(type)) {
        b->offsets = checked(calloc(b->capacity + 1, sizeof(int32_t)));
    } else {
        b->fixed = checked(calloc(b->capacity, fixed_width(type)));
    }
}

/* Adds a NULL row (the value slot is zero). */
static void builder_push_null(builder *b) {
    if (b->rows == b->capacity) {
        size_t old = b->capacity;
        b->capacity *= 2;
        b->validity = checked(realloc(b->validity, (b->capacity + 7) / 8));
        memset(b->validity + (old + 7) / 8, 0, (b->capacity + 7) / 8 - (old + 7) / 8);
        if (is_var(b->type)) {
            b->offsets = checked(realloc(b->offsets, (b->capacity + 1) * sizeof(int32_t)));
        } else {
            b->fixed = checked(realloc(b->fixed, b->capacity * fixed_width(b->type)));
            memset((uint8_t *)b->fixed + old * fixed_width(b->type), 0, (b->capacity - old) * fixed_width(b->type));
        }
    }
    size_t row = b->rows++;
    b->validity[row / 8] &= (uint8_t) ~(1u << (row % 8)); /* a slot may be reused after a rollback */
    if (is_var(b->type)) b->offsets[b->rows] = (int32_t)b->data_len;
}

/* Row `row` (< rows) becomes NULL. */
static void builder_null(builder *b, size_t row) {
    b->validity[row / 8] &= (uint8_t) ~(1u << (row % 8));
    if (is_var(b->type) && row + 1 == b->rows) {
        b->data_len = (size_t)b->offsets[row];
        b->offsets[row + 1] = (int32_t)b->data_len;
    }
}

static void builder_valid(builder *b, size_t row) {
    b->validity[row / 8] |= (uint8_t)(1u << (row % 8));
}

static void builder_set_fixed(builder *b, size_t row, const void *value, size_t width) {
    memcpy((uint8_t *)b->fixed + row * width, value, width);
    builder_valid(b, row);
}

/* Sets the current row's bytes, replacing what it had: var-width rows are written in order, so
 * the current row is the one whose data ends the buffer. */
static void builder_set_var(builder *b, size_t row, const void *ptr, size_t len) {
    b->data_len = (size_t)b->offsets[row];
    b->data = grow(b->data, &b->data_capacity, b->data_len + len, 1);
    memcpy(b->data + b->data_len, ptr, len);
    b->data_len += len;
    b->offsets[row + 1] = (int32_t)b->data_len;
    builder_valid(b, row);
}

static column_t builder_finish(builder *b) {
    column_t out;
    memset(&out, 0, sizeof out);
    size_t rows = b->rows;
    out.len = (uint32_t)rows;
    size_t bytes = (rows + 7) / 8;
    bool all_valid = true;
    for (size_t i = 0; i < rows / 8 && all_valid; i++) all_valid = b->validity[i] == 0xFF;
    for (size_t i = rows / 8 * 8; i < rows && all_valid; i++) all_valid = (b->validity[i / 8] >> (i % 8)) & 1;
    if (all_valid) {
        free(b->validity);
    } else {
        out.validity.is_some = true;
        out.validity.val.ptr = b->validity;
        out.validity.val.len = bytes;
    }
    weir_plugin_types_column_values_t *v = &out.values;
    v->tag = values_tag(b->type);
    switch (b->type) {
        case WEIR_BOOLEAN: {
            uint8_t *packed = checked(calloc(bytes ? bytes : 1, 1));
            for (size_t i = 0; i < rows; i++) {
                if (((uint8_t *)b->fixed)[i]) packed[i / 8] |= (uint8_t)(1u << (i % 8));
            }
            free(b->fixed);
            v->val.boolean.ptr = packed;
            v->val.boolean.len = bytes;
            break;
        }
#define FIXED_VALUES(type, member)             \
    case type:                                 \
        v->val.member.ptr = b->fixed;          \
        v->val.member.len = rows;              \
        break;
        FIXED_VALUES(WEIR_INT32, int32)
        FIXED_VALUES(WEIR_DATE32, date32)
        FIXED_VALUES(WEIR_INT64, int64)
        FIXED_VALUES(WEIR_UINT64, uint64)
        FIXED_VALUES(WEIR_FLOAT32, float32)
        FIXED_VALUES(WEIR_FLOAT64, float64)
#undef FIXED_VALUES
        case WEIR_UTF8:
        case WEIR_BINARY: {
            weir_plugin_types_var_data_t var;
            var.offsets.ptr = b->offsets;
            var.offsets.len = rows + 1;
            var.data.ptr = b->data ? b->data : checked(malloc(1));
            var.data.len = b->data_len;
            if (b->type == WEIR_UTF8) {
                v->val.utf8 = var;
            } else {
                v->val.binary = var;
            }
            break;
        }
        default: /* timestamps */
            v->val.timestamp.ptr = b->fixed;
            v->val.timestamp.len = rows;
            break;
    }
    return out;
}

/* ---- the row ------------------------------------------------------------------------------ */

typedef struct error_list {
    weir_plugin_types_row_error_t *items;
    size_t len, capacity;
} error_list;

/* What a call keeps beside the public part of `weir_row`. */
struct weir_row_state {
    const weir_function *fn;
    /* scalar */
    builder *result;
    /* table */
    builder *outputs;
    uint32_t *parents;
    size_t parents_len, parents_capacity;
    size_t first_output; /* the current input row's first output row */
    error_list *errors;
};


/* ---- results ------------------------------------------------------------------------------ */

/* The builder and row the current function writes a value of `type` into, or NULL when the
 * call is a mismatch (a table function returning, a type different from the signature's). */
static builder *scalar_target(weir_row *row, weir_type type) {
    if (row->state->result == NULL) {
        weir_fail(row, "weir_return_* called from a table function (use weir_emit and weir_out_*)");
        return NULL;
    }
    if (!accepts(row->state->result->type, type)) {
        weir_fail(row, "%s: set a %s result (weir_return_%s), but weir-plugin.yaml declares it returns %s (use weir_return_%s)",
                  row->state->fn->name, type_name(type), setter_suffix(type), type_name(row->state->result->type),
                  setter_suffix(row->state->result->type));
        return NULL;
    }
    return row->state->result;
}

void weir__return_other(weir_row *row, weir_type type, const void *value) {
    builder *b = scalar_target(row, type);
    if (b && !row->failed) builder_set_fixed(b, row->index, value, fixed_width(b->type));
}

void weir_return_null(weir_row *row) {
    if (row->state->result) builder_null(row->state->result, row->index);
}

void weir_return_str(weir_row *row, const char *ptr, size_t len) {
    builder *b = scalar_target(row, WEIR_UTF8);
    if (b && !row->failed) builder_set_var(b, row->index, ptr, len);
}

void weir_return_cstr(weir_row *row, const char *text) {
    weir_return_str(row, text, strlen(text));
}

void weir_return_bytes(weir_row *row, const uint8_t *ptr, size_t len) {
    builder *b = scalar_target(row, WEIR_BINARY);
    if (b && !row->failed) builder_set_var(b, row->index, ptr, len);
}

void weir_fail(weir_row *row, const char *format, ...) {
    if (row->failed) return; /* the first reason counts */
    row->failed = true;
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    error_list *errors = row->state->errors;
    errors->items = grow(errors->items, &errors->capacity, errors->len + 1, sizeof *errors->items);
    errors->items[errors->len].row = row->index;
    errors->items[errors->len].message = owned_cstring(message);
    errors->len++;
    if (row->state->result) builder_null(row->state->result, row->index);
}

/* ---- table outputs ------------------------------------------------------------------------ */

void weir_emit(weir_row *row) {
    if (row->state->outputs == NULL) {
        weir_fail(row, "weir_emit called from a scalar function");
        return;
    }
    if (row->failed) return;
    for (unsigned c = 0; c < row->state->fn->output_count; c++) builder_push_null(&row->state->outputs[c]);
    row->state->parents = grow(row->state->parents, &row->state->parents_capacity, row->state->parents_len + 1, sizeof *row->state->parents);
    row->state->parents[row->state->parents_len++] = row->index;
}

static builder *out_target(weir_row *row, unsigned column, weir_type type) {
    if (row->state->outputs == NULL || row->failed) return NULL;
    if (row->state->parents_len == row->state->first_output) {
        weir_fail(row, "weir_out_* before weir_emit");
        return NULL;
    }
    if (column >= row->state->fn->output_count) {
        weir_fail(row, "output column %u does not exist", column);
        return NULL;
    }
    builder *b = &row->state->outputs[column];
    if (!accepts(b->type, type)) {
        weir_fail(row, "output column %s set as %s (weir_out_%s), but weir-plugin.yaml declares %s (use weir_out_%s)",
                  row->state->fn->output_names[column], type_name(type), setter_suffix(type), type_name(b->type),
                  setter_suffix(b->type));
        return NULL;
    }
    return b;
}

#define OUT_FIXED(suffix, ctype, wtype)                                                   \
    void weir_out_##suffix(weir_row *row, unsigned column, ctype value) {                \
        builder *b = out_target(row, column, wtype);                                      \
        if (b) builder_set_fixed(b, b->rows - 1, &value, sizeof value);                   \
    }

OUT_FIXED(i32, int32_t, WEIR_INT32)
OUT_FIXED(i64, int64_t, WEIR_INT64)
OUT_FIXED(u64, uint64_t, WEIR_UINT64)
OUT_FIXED(f32, float, WEIR_FLOAT32)
OUT_FIXED(f64, double, WEIR_FLOAT64)

void weir_out_bool(weir_row *row, unsigned column, bool value) {
    builder *b = out_target(row, column, WEIR_BOOLEAN);
    uint8_t byte = value ? 1 : 0;
    if (b) builder_set_fixed(b, b->rows - 1, &byte, 1);
}

void weir_out_null(weir_row *row, unsigned column) {
    if (row->state->outputs && column < row->state->fn->output_count && row->state->outputs[column].rows > row->state->first_output) {
        builder_null(&row->state->outputs[column], row->state->outputs[column].rows - 1);
    }
}

void weir_out_str(weir_row *row, unsigned column, const char *ptr, size_t len) {
    builder *b = out_target(row, column, WEIR_UTF8);
    if (b) builder_set_var(b, b->rows - 1, ptr, len);
}

void weir_out_bytes(weir_row *row, unsigned column, const uint8_t *ptr, size_t len) {
    builder *b = out_target(row, column, WEIR_BINARY);
    if (b) builder_set_var(b, b->rows - 1, ptr, len);
}

/* ---- host --------------------------------------------------------------------------------- */

void weir_log(const char *message) {
    string_t text = {(uint8_t *)message, strlen(message)};
    WEIR_W(list_tuple2_string_string_t) fields = {NULL, 0};
    weir_plugin_host_log(WEIR_PLUGIN_HOST_LEVEL_INFO, &text, &fields);
}

void weir_counter_add(const char *name, uint64_t value) {
    string_t text = {(uint8_t *)name, strlen(name)};
    weir_plugin_host_counter_add(&text, value);
}

void weir_gauge_set(const char *name, double value) {
    string_t text = {(uint8_t *)name, strlen(name)};
    weir_plugin_host_gauge_set(&text, value);
}

/* ---- describe ----------------------------------------------------------------------------- */

static weir_plugin_types_data_type_t data_type(weir_type type) {
    weir_plugin_types_data_type_t out;
    memset(&out, 0, sizeof out);
    switch (type) {
        case WEIR_BOOLEAN: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_BOOLEAN; break;
        case WEIR_INT32: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_INT32; break;
        case WEIR_INT64: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_INT64; break;
        case WEIR_UINT64: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_UINT64; break;
        case WEIR_FLOAT32: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_FLOAT32; break;
        case WEIR_FLOAT64: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_FLOAT64; break;
        case WEIR_UTF8: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_UTF8; break;
        case WEIR_BINARY: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_BINARY; break;
        case WEIR_DATE32: out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_DATE32; break;
        case WEIR_TIMESTAMP_S:
        case WEIR_TIMESTAMP_MS:
        case WEIR_TIMESTAMP_US:
        case WEIR_TIMESTAMP_NS:
            out.tag = WEIR_PLUGIN_TYPES_DATA_TYPE_TIMESTAMP;
            out.val.timestamp = (weir_plugin_types_time_unit_t)(type - WEIR_TIMESTAMP_S);
            break;
    }
    return out;
}

static weir_plugin_types_list_data_type_t arg_types(const weir_function *fn) {
    weir_plugin_types_list_data_type_t out = {checked(malloc((fn->arg_count ? fn->arg_count : 1) * sizeof *out.ptr)), fn->arg_count};
    for (unsigned i = 0; i < fn->arg_count; i++) out.ptr[i] = data_type(fn->args[i]);
    return out;
}

static weir_plugin_types_plugin_info_t plugin_info(void) {
    weir_plugin_types_plugin_info_t info;
    info.name = owned_cstring(weir_plugin_name);
    info.version = owned_cstring(weir_plugin_version);
    info.description = owned_cstring(weir_plugin_description);
    return info;
}

#if defined(WEIR_WORLD_SCALAR_UDF)
void exports_weir_plugin_scalar_describe(exports_weir_plugin_scalar_tuple2_plugin_info_list_scalar_signature_t *ret) {
    ret->f0 = plugin_info();
    ret->f1.len = weir_function_count;
    ret->f1.ptr = checked(malloc((weir_function_count ? weir_function_count : 1) * sizeof *ret->f1.ptr));
    for (unsigned i = 0; i < weir_function_count; i++) {
        const weir_function *fn = &weir_functions[i];
        ret->f1.ptr[i].name = owned_cstring(fn->name);
        ret->f1.ptr[i].args = arg_types(fn);
        ret->f1.ptr[i].returns = data_type(fn->returns);
        ret->f1.ptr[i].description = owned_cstring(fn->description);
    }
}
#else
void exports_weir_plugin_table_describe(exports_weir_plugin_table_tuple2_plugin_info_list_table_signature_t *ret) {
    ret->f0 = plugin_info();
    ret->f1.len = weir_function_count;
    ret->f1.ptr = checked(malloc((weir_function_count ? weir_function_count : 1) * sizeof *ret->f1.ptr));
    for (unsigned i = 0; i < weir_function_count; i++) {
        const weir_function *fn = &weir_functions[i];
        ret->f1.ptr[i].name = owned_cstring(fn->name);
        ret->f1.ptr[i].args = arg_types(fn);
        ret->f1.ptr[i].output.len = fn->output_count;
        ret->f1.ptr[i].output.ptr = checked(malloc((fn->output_count ? fn->output_count : 1) * sizeof(weir_plugin_types_field_t)));
        for (unsigned c = 0; c < fn->output_count; c++) {
            ret->f1.ptr[i].output.ptr[c].name = owned_cstring(fn->output_names[c]);
            ret->f1.ptr[i].output.ptr[c].data_type = data_type(fn->output_types[c]);
            ret->f1.ptr[i].output.ptr[c].nullable = true;
        }
        ret->f1.ptr[i].description = owned_cstring(fn->description);
    }
}
#endif

/* ---- call --------------------------------------------------------------------------------- */

static bool column_matches(const column_t *column, weir_type type) {
    return column->values.tag == values_tag(type);
}

/* Checks the call's arguments; a message in `err` when they do not fit the signature. */
static const weir_function *check_call(uint32_t index, uint32_t rows, const column_t *args, size_t count,
                                       weir_plugin_types_call_error_t *err) {
    char message[256];
    const weir_function *fn = index < weir_function_count ? &weir_functions[index] : NULL;
    if (fn == NULL) {
        snprintf(message, sizeof message, "no function number %u", (unsigned)index);
    } else if (count != fn->arg_count) {
        snprintf(message, sizeof message, "%s takes %u arguments, got %zu", fn->name, fn->arg_count, count);
    } else {
        for (size_t i = 0; i < count; i++) {
            if (!column_matches(&args[i], fn->args[i]) || args[i].len != rows) {
                snprintf(message, sizeof message, "%s: argument %zu has another type or length than the signature", fn->name, i);
                fn = NULL;
                break;
            }
        }
        if (fn) return fn;
    }
    err->tag = WEIR_PLUGIN_TYPES_CALL_ERROR_INVALID_INPUT;
    err->val.invalid_input = owned_cstring(message);
    return NULL;
}

/* Views of the argument columns for the inline accessors, and whether any has NULLs. */
static weir_column_view *views_of(const column_t *args, size_t count, bool *any_validity) {
    weir_column_view *views = checked(calloc(count ? count : 1, sizeof *views));
    *any_validity = false;
    for (size_t i = 0; i < count; i++) {
        const column_t *column = &args[i];
        if (column->validity.is_some) {
            views[i].validity = column->validity.val.ptr;
            *any_validity = true;
        }
        switch (column->values.tag) {
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_UTF8:
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_BINARY:
                views[i].values = column->values.val.utf8.data.ptr;
                views[i].offsets = column->values.val.utf8.offsets.ptr;
                break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_BOOLEAN: views[i].values = column->values.val.boolean.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_INT32: views[i].values = column->values.val.int32.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_DATE32: views[i].values = column->values.val.date32.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_INT64: views[i].values = column->values.val.int64.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_TIMESTAMP: views[i].values = column->values.val.timestamp.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_UINT64: views[i].values = column->values.val.uint64.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_FLOAT32: views[i].values = column->values.val.float32.ptr; break;
            case WEIR_PLUGIN_TYPES_COLUMN_VALUES_FLOAT64: views[i].values = column->values.val.float64.ptr; break;
            default: views[i].values = column->values.val.decimal128.ptr; break;
        }
    }
    return views;
}

/* Whether a strict function skips row `index` for a NULL argument. */
static bool skips(const weir_function *fn, const weir_column_view *views, uint32_t index) {
    if (fn->nulls) return false;
    for (unsigned i = 0; i < fn->arg_count; i++) {
        if (views[i].validity && !((views[i].validity[index >> 3] >> (index & 7)) & 1)) return true;
    }
    return false;
}

/* A reactor never exits, so stdio's buffers are never flushed on their own: what a function
 * printed during a call reaches the host when the call returns, whole lines, in order. */
static void flush_output(void) {
    fflush(stdout);
    fflush(stderr);
}

#if defined(WEIR_WORLD_SCALAR_UDF)
bool exports_weir_plugin_scalar_call(uint32_t function, uint32_t rows, exports_weir_plugin_scalar_list_column_t *args,
                                     exports_weir_plugin_scalar_scalar_output_t *ret,
                                     exports_weir_plugin_scalar_call_error_t *err) {
    const weir_function *fn = check_call(function, rows, args->ptr, args->len, err);
    if (fn == NULL) {
        exports_weir_plugin_scalar_list_column_free(args);
        return false;
    }
    builder result;
    builder_init(&result, fn->returns, rows);
    result.rows = rows; /* every slot starts NULL: the buffers are zeroed */
    error_list errors = {NULL, 0, 0};
    struct weir_row_state state;
    memset(&state, 0, sizeof state);
    state.fn = fn;
    state.result = &result;
    state.errors = &errors;
    bool any_validity;
    weir_column_view *views = views_of(args->ptr, args->len, &any_validity);
    weir_row row;
    memset(&row, 0, sizeof row);
    row.args = views;
    row.state = &state;
    row.result_type = fn->returns;
    row.result_values = is_var(fn->returns) ? NULL : result.fixed;
    row.result_validity = result.validity;
    bool var = is_var(result.type);
    if (!var && fn->loop != NULL) {
        fn->loop(&row, rows, any_validity);
        rows = 0; /* done: the generated loop ran every row */
    }
    for (uint32_t i = 0; i < rows; i++) {
        if (any_validity && skips(fn, views, i)) continue;
        row.index = i;
        row.failed = false;
        /* Var-width values are appended in row order: close the previous rows' offsets. */
        if (var) result.offsets[i] = (int32_t)result.data_len;
        fn->fn(&row);
        if (var) {
            if (!((result.validity[i / 8] >> (i % 8)) & 1)) result.data_len = (size_t)result.offsets[i];
            result.offsets[i + 1] = (int32_t)result.data_len;
        }
    }
    if (var) {
        /* Rows skipped for NULLs keep empty slots. */
        for (uint32_t i = 0; i < rows; i++) {
            if (result.offsets[i + 1] < result.offsets[i]) result.offsets[i + 1] = result.offsets[i];
        }
    }
    free(views);
    ret->values = builder_finish(&result);
    ret->errors.ptr = errors.items ? errors.items : checked(malloc(1));
    ret->errors.len = errors.len;
    exports_weir_plugin_scalar_list_column_free(args);
    flush_output();
    return true;
}
#else
bool exports_weir_plugin_table_call(uint32_t function, uint32_t rows, exports_weir_plugin_table_list_column_t *args,
                                    exports_weir_plugin_table_table_output_t *ret,
                                    exports_weir_plugin_table_call_error_t *err) {
    const weir_function *fn = check_call(function, rows, args->ptr, args->len, err);
    if (fn == NULL) {
        exports_weir_plugin_table_list_column_free(args);
        return false;
    }
    builder *outputs = checked(calloc(fn->output_count ? fn->output_count : 1, sizeof *outputs));
    for (unsigned c = 0; c < fn->output_count; c++) builder_init(&outputs[c], fn->output_types[c], rows);
    error_list errors = {NULL, 0, 0};
    struct weir_row_state state;
    memset(&state, 0, sizeof state);
    state.fn = fn;
    state.outputs = outputs;
    state.errors = &errors;
    bool any_validity;
    weir_column_view *views = views_of(args->ptr, args->len, &any_validity);
    weir_row row;
    memset(&row, 0, sizeof row);
    row.args = views;
    row.state = &state;
    for (uint32_t i = 0; i < rows; i++) {
        if (any_validity && skips(fn, views, i)) continue;
        row.index = i;
        row.failed = false;
        state.first_output = state.parents_len;
        fn->fn(&row);
        if (row.failed) {
            /* A rejected input row contributes no output rows. */
            for (unsigned c = 0; c < fn->output_count; c++) {
                builder *b = &outputs[c];
                b->rows = state.first_output;
                if (is_var(b->type)) b->data_len = (size_t)b->offsets[b->rows];
            }
            state.parents_len = state.first_output;
        }
    }
    free(views);
    ret->parents.ptr = state.parents ? state.parents : checked(malloc(1));
    ret->parents.len = state.parents_len;
    ret->columns.len = fn->output_count;
    ret->columns.ptr = checked(malloc((fn->output_count ? fn->output_count : 1) * sizeof(column_t)));
    for (unsigned c = 0; c < fn->output_count; c++) ret->columns.ptr[c] = builder_finish(&outputs[c]);
    free(outputs);
    ret->errors.ptr = errors.items ? errors.items : checked(malloc(1));
    ret->errors.len = errors.len;
    exports_weir_plugin_table_list_column_free(args);
    flush_output();
    return true;
}
#endif
