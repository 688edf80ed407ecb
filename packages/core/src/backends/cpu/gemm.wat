;; float32 gemm with WebAssembly SIMD (f32x4), BLAS-style (Goto) blocking.
;;
;;   C[i*n + j] = sum_p A[i*sAm + p*sAk] * B[p*sBk + j*sBn]
;;
;; All pointers are byte addresses in this module's memory; strides are in
;; elements, so a transposed operand is just a pair of swapped strides.
;; Operands are packed into contiguous micro-panels (A: 4 rows interleaved per
;; k, B: 8 columns per k, zero-padded at the edges), then a 4x8 micro-kernel
;; keeps its tile of C in eight v128 accumulators.
;; The first 128 bytes of each caller's workspace are a scratch tile for partial
;; edge tiles of C, so threads sharing the memory never share scratch.
;; B may be 16-bit (bmode 1: bfloat16, 2: float16), widened to float32 while
;; packing; float16 goes through a 65536-entry float32 table at F16_TABLE.
;; The memory is imported: one (shared) memory for every module and thread.
;; NOTE: mul + add, not relaxed_madd: relaxed SIMD needs a flag in Node 20.
;; Regenerate gemm-wasm.ts after editing: npm run build:wasm
(module
  (import "env" "memory" (memory 1 32768 shared))

  ;; Packs rows [0, mc) x depth [0, kc) of A into ceil(mc/4) panels of kc*4 floats.
  (func $packA (param $dst i32) (param $src i32) (param $sAm i32) (param $sAk i32)
                (param $mc i32) (param $kc i32)
    (local $i i32) (local $p i32) (local $r i32) (local $rows i32)
    (local $r0 i32) (local $r1 i32) (local $r2 i32) (local $r3 i32) (local $step i32)
    (local.set $sAm (i32.shl (local.get $sAm) (i32.const 2)))
    (local.set $step (i32.shl (local.get $sAk) (i32.const 2)))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $i) (local.get $mc)))
        (local.set $rows (i32.sub (local.get $mc) (local.get $i)))
        (local.set $r0 (i32.add (local.get $src) (i32.mul (local.get $i) (local.get $sAm))))
        (if (i32.ge_u (local.get $rows) (i32.const 4))
          (then
            (local.set $r1 (i32.add (local.get $r0) (local.get $sAm)))
            (local.set $r2 (i32.add (local.get $r1) (local.get $sAm)))
            (local.set $r3 (i32.add (local.get $r2) (local.get $sAm)))
            (local.set $p (i32.const 0))
            (if (i32.eq (local.get $sAm) (i32.const 4))
              (then
                ;; transposed A: the 4 rows of one k are adjacent
                (loop $kT
                  (v128.store (local.get $dst) (v128.load (local.get $r0)))
                  (local.set $r0 (i32.add (local.get $r0) (local.get $step)))
                  (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (br_if $kT (i32.lt_u (local.get $p) (local.get $kc)))))
              (else
                (loop $k
                  (v128.store (local.get $dst)
                    (f32x4.replace_lane 3
                      (f32x4.replace_lane 2
                        (f32x4.replace_lane 1
                          (v128.load32_zero (local.get $r0))
                          (f32.load (local.get $r1)))
                        (f32.load (local.get $r2)))
                      (f32.load (local.get $r3))))
                  (local.set $r0 (i32.add (local.get $r0) (local.get $step)))
                  (local.set $r1 (i32.add (local.get $r1) (local.get $step)))
                  (local.set $r2 (i32.add (local.get $r2) (local.get $step)))
                  (local.set $r3 (i32.add (local.get $r3) (local.get $step)))
                  (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
                  (local.set $p (i32.add (local.get $p) (i32.const 1)))
                  (br_if $k (i32.lt_u (local.get $p) (local.get $kc)))))))
          (else
            ;; fewer than 4 rows left: zero-pad the panel
            (local.set $p (i32.const 0))
            (loop $kEdge
              (v128.store (local.get $dst) (v128.const i32x4 0 0 0 0))
              (local.set $r (i32.const 0))
              (local.set $r1 (local.get $r0))
              (loop $row
                (f32.store
                  (i32.add (local.get $dst) (i32.shl (local.get $r) (i32.const 2)))
                  (f32.load (local.get $r1)))
                (local.set $r1 (i32.add (local.get $r1) (local.get $sAm)))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br_if $row (i32.lt_u (local.get $r) (local.get $rows))))
              (local.set $r0 (i32.add (local.get $r0) (local.get $step)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br_if $kEdge (i32.lt_u (local.get $p) (local.get $kc))))))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $panels))))

  ;; Packs depth [0, kc) x columns [0, nc) of B into ceil(nc/8) panels of kc*8 floats.
  (func $packB (param $dst i32) (param $src i32) (param $sBk i32) (param $sBn i32)
                (param $nc i32) (param $kc i32)
    (local $j i32) (local $p i32) (local $c i32) (local $cols i32)
    (local $col i32) (local $q i32) (local $v i32) (local $step i32)
    (local.set $sBn (i32.shl (local.get $sBn) (i32.const 2)))
    (local.set $step (i32.shl (local.get $sBk) (i32.const 2)))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $j) (local.get $nc)))
        (local.set $cols (i32.sub (local.get $nc) (local.get $j)))
        (local.set $col (i32.add (local.get $src) (i32.mul (local.get $j) (local.get $sBn))))
        (if (i32.and (i32.ge_u (local.get $cols) (i32.const 8))
                     (i32.eq (local.get $sBn) (i32.const 4)))
          (then
            ;; row-major B, full panel: 8 adjacent floats per k
            (local.set $p (i32.const 0))
            (loop $k
              (v128.store (local.get $dst) (v128.load (local.get $col)))
              (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $col)))
              (local.set $col (i32.add (local.get $col) (local.get $step)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br_if $k (i32.lt_u (local.get $p) (local.get $kc)))))
          (else
            ;; strided columns (transposed B) or a partial panel, one column at a time
            (if (i32.lt_u (local.get $cols) (i32.const 8))
              (then
                (local.set $q (local.get $dst))
                (local.set $v (i32.add (local.get $dst) (i32.shl (local.get $kc) (i32.const 5))))
                (loop $zero
                  (v128.store (local.get $q) (v128.const i32x4 0 0 0 0))
                  (v128.store offset=16 (local.get $q) (v128.const i32x4 0 0 0 0))
                  (local.set $q (i32.add (local.get $q) (i32.const 32)))
                  (br_if $zero (i32.lt_u (local.get $q) (local.get $v)))))
              (else (local.set $cols (i32.const 8))))
            (local.set $c (i32.const 0))
            (loop $column
              (local.set $q (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2))))
              (local.set $v (local.get $col))
              (local.set $p (i32.const 0))
              (loop $k
                (f32.store (local.get $q) (f32.load (local.get $v)))
                (local.set $v (i32.add (local.get $v) (local.get $step)))
                (local.set $q (i32.add (local.get $q) (i32.const 32)))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br_if $k (i32.lt_u (local.get $p) (local.get $kc))))
              (local.set $col (i32.add (local.get $col) (local.get $sBn)))
              (local.set $c (i32.add (local.get $c) (i32.const 1)))
              (br_if $column (i32.lt_u (local.get $c) (local.get $cols))))
            (local.set $dst (i32.add (local.get $dst) (i32.shl (local.get $kc) (i32.const 5))))))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $panels))))

  ;; Packs depth [0, kc) x columns [0, nc) of a 16-bit B (bmode 1 bfloat16, 2 float16)
  ;; into ceil(nc/8) float32 panels of kc*8, one column at a time; strides in elements.
  (func $packB16 (param $dst i32) (param $src i32) (param $sBk i32) (param $sBn i32)
                  (param $nc i32) (param $kc i32) (param $mode i32)
    (local $j i32) (local $p i32) (local $c i32) (local $cols i32)
    (local $col i32) (local $q i32) (local $v i32) (local $step i32)
    (local.set $sBn (i32.shl (local.get $sBn) (i32.const 1)))
    (local.set $step (i32.shl (local.get $sBk) (i32.const 1)))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $j) (local.get $nc)))
        (local.set $cols (i32.sub (local.get $nc) (local.get $j)))
        (local.set $col (i32.add (local.get $src) (i32.mul (local.get $j) (local.get $sBn))))
        (if (i32.lt_u (local.get $cols) (i32.const 8))
          (then
            (local.set $q (local.get $dst))
            (local.set $v (i32.add (local.get $dst) (i32.shl (local.get $kc) (i32.const 5))))
            (loop $zero
              (v128.store (local.get $q) (v128.const i32x4 0 0 0 0))
              (v128.store offset=16 (local.get $q) (v128.const i32x4 0 0 0 0))
              (local.set $q (i32.add (local.get $q) (i32.const 32)))
              (br_if $zero (i32.lt_u (local.get $q) (local.get $v)))))
          (else (local.set $cols (i32.const 8))))
        (local.set $c (i32.const 0))
        (loop $column
          (local.set $q (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2))))
          (local.set $v (local.get $col))
          (local.set $p (i32.const 0))
          (if (i32.eq (local.get $mode) (i32.const 1))
            (then
              ;; bfloat16: the high half of a float32
              (loop $kb
                (i32.store (local.get $q) (i32.shl (i32.load16_u (local.get $v)) (i32.const 16)))
                (local.set $v (i32.add (local.get $v) (local.get $step)))
                (local.set $q (i32.add (local.get $q) (i32.const 32)))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br_if $kb (i32.lt_u (local.get $p) (local.get $kc)))))
            (else
              (loop $kh
                (f32.store (local.get $q)
                  (f32.load offset=65536 (i32.shl (i32.load16_u (local.get $v)) (i32.const 2))))
                (local.set $v (i32.add (local.get $v) (local.get $step)))
                (local.set $q (i32.add (local.get $q) (i32.const 32)))
                (local.set $p (i32.add (local.get $p) (i32.const 1)))
                (br_if $kh (i32.lt_u (local.get $p) (local.get $kc))))))
          (local.set $col (i32.add (local.get $col) (local.get $sBn)))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br_if $column (i32.lt_u (local.get $c) (local.get $cols))))
        (local.set $dst (i32.add (local.get $dst) (i32.shl (local.get $kc) (i32.const 5))))
        (local.set $j (i32.add (local.get $j) (i32.const 8)))
        (br $panels))))

  ;; C[0:mr, 0:nr] (+)= Apanel (kc x 4) * Bpanel (kc x 8); ldc in bytes.
  (func $kernel (param $kc i32) (param $ap i32) (param $bp i32) (param $c i32) (param $ldc i32)
                (param $mr i32) (param $nr i32) (param $acc i32) (param $scr i32)
    (local $c0a v128) (local $c0b v128) (local $c1a v128) (local $c1b v128)
    (local $c2a v128) (local $c2b v128) (local $c3a v128) (local $c3b v128)
    (local $b0 v128) (local $b1 v128) (local $a v128) (local $end i32)
    (local $r i32) (local $j i32) (local $row i32) (local $t i32)
    (local.set $end (i32.add (local.get $bp) (i32.shl (local.get $kc) (i32.const 5))))
    (loop $k
      (local.set $b0 (v128.load (local.get $bp)))
      (local.set $b1 (v128.load offset=16 (local.get $bp)))
      (local.set $a (v128.load32_splat (local.get $ap)))
      (local.set $c0a (f32x4.add (local.get $c0a) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c0b (f32x4.add (local.get $c0b) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=4 (local.get $ap)))
      (local.set $c1a (f32x4.add (local.get $c1a) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c1b (f32x4.add (local.get $c1b) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=8 (local.get $ap)))
      (local.set $c2a (f32x4.add (local.get $c2a) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c2b (f32x4.add (local.get $c2b) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $a (v128.load32_splat offset=12 (local.get $ap)))
      (local.set $c3a (f32x4.add (local.get $c3a) (f32x4.mul (local.get $a) (local.get $b0))))
      (local.set $c3b (f32x4.add (local.get $c3b) (f32x4.mul (local.get $a) (local.get $b1))))
      (local.set $ap (i32.add (local.get $ap) (i32.const 16)))
      (local.set $bp (i32.add (local.get $bp) (i32.const 32)))
      (br_if $k (i32.lt_u (local.get $bp) (local.get $end))))
    (if (i32.and (i32.eq (local.get $mr) (i32.const 4)) (i32.eq (local.get $nr) (i32.const 8)))
      (then
        (if (local.get $acc)
          (then
            (local.set $row (local.get $c))
            (local.set $c0a (f32x4.add (local.get $c0a) (v128.load (local.get $row))))
            (local.set $c0b (f32x4.add (local.get $c0b) (v128.load offset=16 (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $ldc)))
            (local.set $c1a (f32x4.add (local.get $c1a) (v128.load (local.get $row))))
            (local.set $c1b (f32x4.add (local.get $c1b) (v128.load offset=16 (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $ldc)))
            (local.set $c2a (f32x4.add (local.get $c2a) (v128.load (local.get $row))))
            (local.set $c2b (f32x4.add (local.get $c2b) (v128.load offset=16 (local.get $row))))
            (local.set $row (i32.add (local.get $row) (local.get $ldc)))
            (local.set $c3a (f32x4.add (local.get $c3a) (v128.load (local.get $row))))
            (local.set $c3b (f32x4.add (local.get $c3b) (v128.load offset=16 (local.get $row))))))
        (local.set $row (local.get $c))
        (v128.store (local.get $row) (local.get $c0a))
        (v128.store offset=16 (local.get $row) (local.get $c0b))
        (local.set $row (i32.add (local.get $row) (local.get $ldc)))
        (v128.store (local.get $row) (local.get $c1a))
        (v128.store offset=16 (local.get $row) (local.get $c1b))
        (local.set $row (i32.add (local.get $row) (local.get $ldc)))
        (v128.store (local.get $row) (local.get $c2a))
        (v128.store offset=16 (local.get $row) (local.get $c2b))
        (local.set $row (i32.add (local.get $row) (local.get $ldc)))
        (v128.store (local.get $row) (local.get $c3a))
        (v128.store offset=16 (local.get $row) (local.get $c3b)))
      (else
        ;; partial tile: spill to the scratch tile, then copy the valid part
        (v128.store offset=0 (local.get $scr) (local.get $c0a))
        (v128.store offset=16 (local.get $scr) (local.get $c0b))
        (v128.store offset=32 (local.get $scr) (local.get $c1a))
        (v128.store offset=48 (local.get $scr) (local.get $c1b))
        (v128.store offset=64 (local.get $scr) (local.get $c2a))
        (v128.store offset=80 (local.get $scr) (local.get $c2b))
        (v128.store offset=96 (local.get $scr) (local.get $c3a))
        (v128.store offset=112 (local.get $scr) (local.get $c3b))
        (loop $rows
          (local.set $row (i32.add (local.get $c) (i32.mul (local.get $r) (local.get $ldc))))
          (local.set $j (i32.const 0))
          (loop $cols
            (local.set $t (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 2))))
            (f32.store (local.get $t)
              (f32.add
                (f32.load (i32.add (local.get $scr)
                  (i32.add (i32.shl (local.get $r) (i32.const 5)) (i32.shl (local.get $j) (i32.const 2)))))
                (select (f32.load (local.get $t)) (f32.const 0) (local.get $acc))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $cols (i32.lt_u (local.get $j) (local.get $nr))))
          (local.set $r (i32.add (local.get $r) (i32.const 1)))
          (br_if $rows (i32.lt_u (local.get $r) (local.get $mr)))))))

  ;; C (m x n at $c, row stride $ldc elements) = A * B.  $ws: 128 scratch bytes, then a
  ;; workspace of (MC + NC) * KC floats; 16-byte aligned; MC a multiple of 4 and NC a
  ;; multiple of 8.  k >= 1.  $bmode: B's element type (0 float32, 1 bfloat16, 2 float16).
  (func (export "gemm")
    (param $m i32) (param $n i32) (param $k i32)
    (param $a i32) (param $sAm i32) (param $sAk i32)
    (param $b i32) (param $sBk i32) (param $sBn i32)
    (param $c i32) (param $ldc i32) (param $ws i32) (param $MC i32) (param $KC i32) (param $NC i32)
    (param $bmode i32)
    (local $jc i32) (local $pc i32) (local $ic i32) (local $jr i32) (local $ir i32)
    (local $nc i32) (local $kc i32) (local $mc i32) (local $apack i32) (local $bpack i32)
    (local $cBlock i32) (local $bsize i32)
    (local.set $apack (i32.add (local.get $ws) (i32.const 128)))
    (local.set $bpack (i32.add (local.get $apack) (i32.shl (i32.mul (local.get $MC) (local.get $KC)) (i32.const 2))))
    (local.set $ldc (i32.shl (local.get $ldc) (i32.const 2)))
    (local.set $bsize (select (i32.const 4) (i32.const 2) (i32.eqz (local.get $bmode))))
    (loop $jLoop
      (local.set $nc (select (local.get $NC) (i32.sub (local.get $n) (local.get $jc))
                             (i32.lt_u (local.get $NC) (i32.sub (local.get $n) (local.get $jc)))))
      (local.set $pc (i32.const 0))
      (loop $pLoop
        (local.set $kc (select (local.get $KC) (i32.sub (local.get $k) (local.get $pc))
                               (i32.lt_u (local.get $KC) (i32.sub (local.get $k) (local.get $pc)))))
        (local.set $cBlock (i32.add (local.get $b)
          (i32.mul (local.get $bsize) (i32.add (i32.mul (local.get $pc) (local.get $sBk))
                                               (i32.mul (local.get $jc) (local.get $sBn))))))
        (if (local.get $bmode)
          (then (call $packB16 (local.get $bpack) (local.get $cBlock)
            (local.get $sBk) (local.get $sBn) (local.get $nc) (local.get $kc) (local.get $bmode)))
          (else (call $packB (local.get $bpack) (local.get $cBlock)
            (local.get $sBk) (local.get $sBn) (local.get $nc) (local.get $kc))))
        (local.set $ic (i32.const 0))
        (loop $iLoop
          (local.set $mc (select (local.get $MC) (i32.sub (local.get $m) (local.get $ic))
                                 (i32.lt_u (local.get $MC) (i32.sub (local.get $m) (local.get $ic)))))
          (call $packA (local.get $apack)
            (i32.add (local.get $a) (i32.shl (i32.add (i32.mul (local.get $ic) (local.get $sAm))
                                                      (i32.mul (local.get $pc) (local.get $sAk))) (i32.const 2)))
            (local.get $sAm) (local.get $sAk) (local.get $mc) (local.get $kc))
          (local.set $cBlock (i32.add (local.get $c)
            (i32.add (i32.mul (local.get $ic) (local.get $ldc)) (i32.shl (local.get $jc) (i32.const 2)))))
          (local.set $jr (i32.const 0))
          (loop $jrLoop
            (local.set $ir (i32.const 0))
            (loop $irLoop
              (call $kernel (local.get $kc)
                (i32.add (local.get $apack) (i32.shl (i32.mul (local.get $ir) (local.get $kc)) (i32.const 2)))
                (i32.add (local.get $bpack) (i32.shl (i32.mul (local.get $jr) (local.get $kc)) (i32.const 2)))
                (i32.add (local.get $cBlock)
                  (i32.add (i32.mul (local.get $ir) (local.get $ldc)) (i32.shl (local.get $jr) (i32.const 2))))
                (local.get $ldc)
                (select (i32.const 4) (i32.sub (local.get $mc) (local.get $ir))
                        (i32.gt_u (i32.sub (local.get $mc) (local.get $ir)) (i32.const 4)))
                (select (i32.const 8) (i32.sub (local.get $nc) (local.get $jr))
                        (i32.gt_u (i32.sub (local.get $nc) (local.get $jr)) (i32.const 8)))
                (local.get $pc) (local.get $ws))
              (local.set $ir (i32.add (local.get $ir) (i32.const 4)))
              (br_if $irLoop (i32.lt_u (local.get $ir) (local.get $mc))))
            (local.set $jr (i32.add (local.get $jr) (i32.const 8)))
            (br_if $jrLoop (i32.lt_u (local.get $jr) (local.get $nc))))
          (local.set $ic (i32.add (local.get $ic) (local.get $MC)))
          (br_if $iLoop (i32.lt_u (local.get $ic) (local.get $m))))
        (local.set $pc (i32.add (local.get $pc) (local.get $KC)))
        (br_if $pLoop (i32.lt_u (local.get $pc) (local.get $k))))
      (local.set $jc (i32.add (local.get $jc) (local.get $NC)))
      (br_if $jLoop (i32.lt_u (local.get $jc) (local.get $n)))))
)
