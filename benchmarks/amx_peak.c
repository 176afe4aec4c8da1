// The AMX tile unit's peak on this CPU (issue 28's roofline): TDPBF16PS, tile loads and stores, LDTILECFG,
// one thread, back to back on the same registers (throughput, not latency). Linux x86-64 with AMX-BF16:
//     gcc -O2 -march=native benchmarks/amx_peak.c -o /tmp/amx_peak && /tmp/amx_peak
// One TDPBF16PS is 16 x 16 x 32 bf16 multiply-adds (16,384 flops) into fp32.
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <immintrin.h>
#include <string.h>
#include <time.h>
typedef struct { unsigned char palette_id, start_row, rsv[14]; unsigned short colsb[16]; unsigned char rows[16]; } cfg_t;
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  syscall(SYS_arch_prctl, 0x1023, 18);
  cfg_t c; memset(&c,0,sizeof c); c.palette_id=1;
  for(int i=0;i<8;i++){c.rows[i]=16;c.colsb[i]=64;}
  _tile_loadconfig(&c);
  static unsigned short a[16*32] __attribute__((aligned(64))), b[16*32] __attribute__((aligned(64))); static float out[16*16];
  for(int i=0;i<16*32;i++){a[i]=0x3f80; b[i]=0x3f80;}
  _tile_loadd(4,a,64); _tile_loadd(5,b,64);
  long N=2000000;
  double t=now();
  for(long i=0;i<N;i++){ _tile_dpbf16ps(0,4,5); _tile_dpbf16ps(1,4,5); _tile_dpbf16ps(2,4,5); _tile_dpbf16ps(3,4,5);}
  double dt=now()-t;
  printf("dp: %.2f ns per tdpbf16ps (%.1f GFLOP/s)\n", dt/(4*N)*1e9, 4.0*N*16*16*32*2/dt/1e9);
  t=now();
  for(long i=0;i<N;i++){ _tile_loadd(4,a,64); _tile_loadd(5,b,64); _tile_loadd(6,b,64);_tile_loadd(7,b,64);}
  dt=now()-t; printf("load: %.2f ns per tileloadd\n", dt/(4*N)*1e9);
  t=now();
  for(long i=0;i<N;i++){ _tile_stored(0,out,64); }
  dt=now()-t; printf("store: %.2f ns per tilestored\n", dt/(N)*1e9);
  t=now();
  for(long i=0;i<N/10;i++){ _tile_loadconfig(&c); }
  dt=now()-t; printf("ldtilecfg: %.2f ns\n", dt/(N/10)*1e9);
  t=now();
  for(long i=0;i<N;i++){ _tile_zero(0); _tile_zero(1);}
  dt=now()-t; printf("zero: %.2f ns\n", dt/(2*N)*1e9);
  _tile_release();
  return 0;
}
