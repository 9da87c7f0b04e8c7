// Node 20 lacks a few ES2024 built-ins that js-libp2p 3.x calls at run time (not at import
// time). Load with `node --import ./polyfill.mjs peers.mjs`; peers.mjs also imports this
// module first, so `node peers.mjs` works too. Idempotent; a no-op on Node >= 22.

if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
