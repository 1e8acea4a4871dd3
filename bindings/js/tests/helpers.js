// Shared by the tests: every awaited step has its own deadline (so a broken run fails with
// the step that hung), and the two-node setup the in-process tests start from.
'use strict'

const { Node } = require('..')

// Bounds one step; the waits are on events, not sleeps.
const STEP_MS = 30_000

/** `promise`, or a rejection naming `what` after `ms` milliseconds. */
async function step(promise, what = 'a step', ms = STEP_MS) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

const ECHO_SCHEMA = {
  type: 'object',
  properties: { text: { type: 'string' } },
  required: ['text'],
}

/** A provider on loopback and a caller that joined through it. */
async function pair() {
  const provider = await step(Node.start({ listen: '127.0.0.1:0', mdns: false }), 'start provider')
  const caller = await step(
    Node.start({ listen: '127.0.0.1:0', bootstrap: [provider.addr], mdns: false }),
    'start caller',
  )
  return { provider, caller }
}

async function shutdown(...nodes) {
  for (const node of nodes) await step(node.shutdown(), 'shutdown')
}

/** The first item of an async iterable that `pred` accepts. */
async function first(iterable, pred = () => true) {
  for await (const item of iterable) if (pred(item)) return item
  throw new Error('the iteration ended')
}

module.exports = { ECHO_SCHEMA, STEP_MS, first, pair, shutdown, step }
