;; GELU (tanh approximation) and its gradient on f32x4 lanes.
;;
;;   gelu(x) = x * sigmoid(2u),  u = sqrt(2/pi) (x + 0.044715 x^3)
;;           (0.5 (1 + tanh u) = sigmoid(2u): one exp per element, no tanh)
;;   gelu'(x) = s + 2 x s (1 - s) du/dx,  s = sigmoid(2u)
;;
;; exp is Cephes' expf: n = round(x log2 e), r = x - n ln2 (two-part ln2), a
;; degree-6 polynomial for e^r, times 2^n built in the exponent bits (about
;; 1 ulp in float32). Inputs are clamped to [-87.3, 88.3] so 2^n stays normal.
;; Pointers are byte addresses, 16-byte aligned; n4 counts 4-lane vectors.
;; Regenerate activations-wasm.ts after editing: npm run build:wasm
(module
  (import "env" "memory" (memory 1 32768 shared))

  (func $exp4 (param $x v128) (result v128)
    (local $n v128) (local $r v128) (local $p v128)
    (local.set $x (f32x4.min
      (f32x4.max (local.get $x) (v128.const f32x4 -87.3 -87.3 -87.3 -87.3))
      (v128.const f32x4 88.3 88.3 88.3 88.3)))
    (local.set $n (f32x4.nearest
      (f32x4.mul (local.get $x) (v128.const f32x4 1.44269504 1.44269504 1.44269504 1.44269504))))
    (local.set $r (f32x4.sub (local.get $x)
      (f32x4.mul (local.get $n) (v128.const f32x4 0.693359375 0.693359375 0.693359375 0.693359375))))
    (local.set $r (f32x4.sub (local.get $r)
      (f32x4.mul (local.get $n) (v128.const f32x4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4 -2.12194440e-4))))
    (local.set $p (v128.const f32x4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4 1.9875691500e-4))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
      (v128.const f32x4 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3 1.3981999507e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
      (v128.const f32x4 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3 8.3334519073e-3)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
      (v128.const f32x4 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2 4.1665795894e-2)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
      (v128.const f32x4 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1 1.6666665459e-1)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r))
      (v128.const f32x4 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1 5.0000001201e-1)))
    ;; e^r = p r^2 + r + 1
    (local.set $p (f32x4.add
      (f32x4.add (f32x4.mul (local.get $p) (f32x4.mul (local.get $r) (local.get $r))) (local.get $r))
      (v128.const f32x4 1 1 1 1)))
    ;; times 2^n: (n + 127) << 23 is the float 2^n
    (f32x4.mul (local.get $p)
      (i32x4.shl
        (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (v128.const i32x4 127 127 127 127))
        (i32.const 23))))

  ;; sigmoid(2u) for u = sqrt(2/pi) (x + 0.044715 x^3)
  (func $sig2u (param $x v128) (result v128)
    (local $u v128)
    (local.set $u (f32x4.mul
      (v128.const f32x4 0.7978845608 0.7978845608 0.7978845608 0.7978845608)
      (f32x4.add (local.get $x)
        (f32x4.mul (v128.const f32x4 0.044715 0.044715 0.044715 0.044715)
          (f32x4.mul (local.get $x) (f32x4.mul (local.get $x) (local.get $x)))))))
    (f32x4.div (v128.const f32x4 1 1 1 1)
      (f32x4.add (v128.const f32x4 1 1 1 1)
        (call $exp4 (f32x4.mul (local.get $u) (v128.const f32x4 -2 -2 -2 -2))))))

  (func (export "gelu") (param $x i32) (param $out i32) (param $n4 i32)
    (local $v v128)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n4)))
        (local.set $v (v128.load (local.get $x)))
        (v128.store (local.get $out) (f32x4.mul (local.get $v) (call $sig2u (local.get $v))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $n4 (i32.sub (local.get $n4) (i32.const 1)))
        (br $next))))

  (func (export "geluGrad") (param $x i32) (param $dy i32) (param $out i32) (param $n4 i32)
    (local $v v128) (local $s v128) (local $du v128)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n4)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $s (call $sig2u (local.get $v)))
        ;; du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        (local.set $du (f32x4.mul
          (v128.const f32x4 0.7978845608 0.7978845608 0.7978845608 0.7978845608)
          (f32x4.add (v128.const f32x4 1 1 1 1)
            (f32x4.mul (v128.const f32x4 0.134145 0.134145 0.134145 0.134145)
              (f32x4.mul (local.get $v) (local.get $v))))))
        ;; dy * (s + 2 x s (1 - s) du)
        (v128.store (local.get $out)
          (f32x4.mul (v128.load (local.get $dy))
            (f32x4.add (local.get $s)
              (f32x4.mul
                (f32x4.mul (v128.const f32x4 2 2 2 2) (local.get $v))
                (f32x4.mul (f32x4.mul (local.get $s) (f32x4.sub (v128.const f32x4 1 1 1 1) (local.get $s)))
                  (local.get $du))))))
        (local.set $x (i32.add (local.get $x) (i32.const 16)))
        (local.set $dy (i32.add (local.get $dy) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (local.set $n4 (i32.sub (local.get $n4) (i32.const 1)))
        (br $next))))

  ;; Zeroes n bytes at p (the arena's fresh tensors). NOTE: TypedArray fill on a
  ;; SharedArrayBuffer takes a slow word-by-word path in V8; memory.fill is a memset.
  (func (export "zero") (param $p i32) (param $n i32)
    (memory.fill (local.get $p) (i32.const 0) (local.get $n)))
)
