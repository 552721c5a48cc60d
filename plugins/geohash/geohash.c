/* Geohashes, distances and checksums for IoT and location data (signatures in weir-plugin.yaml). */
#include <math.h>
#include <stdint.h>

#include "weir.h"

#define PI 3.14159265358979323846

static const char BASE32[] = "0123456789bcdefghjkmnpqrstuvwxyz";

void geohash(weir_row *row) {
    double lat = weir_arg_f64(row, 0), lon = weir_arg_f64(row, 1);
    int32_t precision = weir_arg_i32(row, 2);
    if (!(lat >= -90.0 && lat <= 90.0) || !(lon >= -180.0 && lon <= 180.0)) {
        weir_fail(row, "coordinates (%g, %g) are out of range", lat, lon);
        return;
    }
    if (precision < 1 || precision > 12) {
        weir_fail(row, "precision %d is not between 1 and 12", (int)precision);
        return;
    }
    double lat_lo = -90.0, lat_hi = 90.0, lon_lo = -180.0, lon_hi = 180.0;
    char hash[13];
    int bit = 0, value = 0, even = 1, length = 0;
    while (length < precision) {
        if (even) {
            double mid = (lon_lo + lon_hi) / 2;
            if (lon >= mid) { value = value * 2 + 1; lon_lo = mid; } else { value *= 2; lon_hi = mid; }
        } else {
            double mid = (lat_lo + lat_hi) / 2;
            if (lat >= mid) { value = value * 2 + 1; lat_lo = mid; } else { value *= 2; lat_hi = mid; }
        }
        even = !even;
        if (++bit == 5) {
            hash[length++] = BASE32[value];
            bit = 0;
            value = 0;
        }
    }
    weir_return_str(row, hash, (size_t)length);
}

void haversine_km(weir_row *row) {
    const double r = 6371.0088, rad = PI / 180.0;
    double lat1 = weir_arg_f64(row, 0) * rad, lon1 = weir_arg_f64(row, 1) * rad;
    double lat2 = weir_arg_f64(row, 2) * rad, lon2 = weir_arg_f64(row, 3) * rad;
    double a = pow(sin((lat2 - lat1) / 2), 2) + cos(lat1) * cos(lat2) * pow(sin((lon2 - lon1) / 2), 2);
    weir_return_f64(row, 2 * r * asin(sqrt(a)));
}

static uint32_t crc_table[256];

static uint32_t crc32_of(const uint8_t *data, size_t len) {
    if (crc_table[1] == 0) {
        for (uint32_t n = 0; n < 256; n++) {
            uint32_t c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[n] = c;
        }
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

void crc32(weir_row *row) {
    weir_bytes data = weir_arg_bytes(row, 0);
    weir_return_i64(row, (int64_t)crc32_of(data.ptr, data.len));
}

void crc32_text(weir_row *row) {
    weir_str text = weir_arg_str(row, 0);
    weir_return_i64(row, (int64_t)crc32_of((const uint8_t *)text.ptr, text.len));
}
