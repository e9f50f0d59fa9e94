/* CRC-32C (Castagnoli, reflected 0x82F63B78), slicing-by-8 tables built
 * once; and FNV-1a 64 for source fingerprints. */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format.h"

static uint32_t tab[8][256];
static pthread_once_t tab_once = PTHREAD_ONCE_INIT;

static void tab_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    tab[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int s = 1; s < 8; s++)
      tab[s][i] = (tab[s - 1][i] >> 8) ^ tab[0][tab[s - 1][i] & 0xff];
}

uint32_t dynq__crc32c(uint32_t crc, const void *p, size_t n) {
  pthread_once(&tab_once, tab_init);
  const uint8_t *b = p;
  crc = ~crc;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, b, 8);  /* little-endian host (static_assert in format.c) */
    v ^= crc;
    crc = tab[7][v & 0xff] ^ tab[6][(v >> 8) & 0xff] ^
          tab[5][(v >> 16) & 0xff] ^ tab[4][(v >> 24) & 0xff] ^
          tab[3][(v >> 32) & 0xff] ^ tab[2][(v >> 40) & 0xff] ^
          tab[1][(v >> 48) & 0xff] ^ tab[0][v >> 56];
    b += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ tab[0][(crc ^ *b++) & 0xff];
  return ~crc;
}

uint64_t dynq__fnv1a64(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}
