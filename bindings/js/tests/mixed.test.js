// A mixed network: a JavaScript node, a Python node (the Python binding, in its own
// process) and a Rust `p2pf node`. Python calls a tool served in JavaScript and
// JavaScript one served in Python; the Rust node joins through the JavaScript node, which
// calls its built-in tool; `p2pf` reads a DHT value the JavaScript node put and calls the
// JavaScript tool.
//
// It needs the Python binding's venv (`P2PF_PYTHON`, made by bindings/python/ci-setup.sh)
// and the `p2pf` binary (`P2PF_BIN`); `cargo xtask js` and `cargo xtask ci` pass both.
// Without them it is skipped, except with CI=true, where it fails.
'use strict'

const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { test } = require('node:test')

const { Node } = require('..')
const { ECHO_SCHEMA, step } = require('./helpers')
const { Child } = require('./lines')

const PYTHON = process.env.P2PF_PYTHON ?? ''
const P2PF = process.env.P2PF_BIN ?? ''
const PROVIDER_PY = path.join(__dirname, '../../python/tests/provider_process.py')
const missing = [
  [PYTHON, 'P2PF_PYTHON (the Python binding venv\'s python)'],
  [P2PF, 'P2PF_BIN (the p2pf binary)'],
]
  .filter(([file]) => !file || !fs.existsSync(file))
  .map(([, what]) => what)
if (missing.length && process.env.CI === 'true') {
  throw new Error(`the mixed test needs ${missing.join(' and ')}: run it through cargo xtask js`)
}

// Python calls the JavaScript node's tools (the good one and the throwing one).
const CALLER_PY = `
import asyncio, sys
from p2p_foundation import Node, ToolError

async def main():
    node = await Node.start(listen="127.0.0.1:0", bootstrap=[sys.argv[1]], mdns=False)
    answer = await node.call_tool("js-upper", {"text": "from python"})
    print("value", answer.value, flush=True)
    print("provider", answer.provider, flush=True)
    try:
        await node.call_tool("js-fail", {})
    except ToolError as e:
        print("tool-error", e, flush=True)
    await node.shutdown()

asyncio.run(asyncio.wait_for(main(), 60))
`

/** Runs `file args`, resolving to its stdout; rejects on a non-zero exit. */
function output(file, args) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000 }, (e, stdout, stderr) =>
      e ? reject(new Error(`${file} ${args.join(' ')}: ${e.message}\n${stderr}`)) : resolve(stdout),
    )
  })
}

test('Python, JavaScript and a Rust p2pf node call each other', { skip: missing.length ? `needs ${missing.join(', ')}` : false }, async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'p2pf-mixed-'))
  const python = new Child(PYTHON, [PROVIDER_PY], { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } })
  let js, rust
  try {
    // The JavaScript node joins through the Python node (the provider process has no
    // bootstrap of its own).
    const pyAddr = await python.expect('addr ')
    const pyId = pyAddr.split('@')[0]
    js = await step(Node.start({ listen: '127.0.0.1:0', bootstrap: [pyAddr], mdns: false }))
    await step(js.registerTool('js-upper', ECHO_SCHEMA, async (args) => args.text.toUpperCase()))
    await step(js.registerTool('js-fail', null, async () => {
      throw new Error('the JavaScript tool fails')
    }))

    // JavaScript calls the tool the Python process serves.
    assert.ok(js.connectedPeers().includes(pyId))
    const reversed = await step(js.callTool('reverse', { text: 'stressed' }))
    assert.deepEqual([reversed.value, reversed.provider], ['desserts', pyId])
    await assert.rejects(step(js.callPeer(pyId, 'fail')), {
      message: 'RuntimeError: this tool always fails',
    })

    // Python calls the tools the JavaScript node serves.
    const fromPy = await step(output(PYTHON, ['-c', CALLER_PY, js.addr]), 'the Python caller', 90_000)
    assert.deepEqual(fromPy.trim().split('\n'), [
      'value FROM PYTHON',
      `provider ${js.peerId}`,
      'tool-error Error: the JavaScript tool fails',
    ])

    // A Rust `p2pf node` joins through the JavaScript node; JavaScript calls its tool.
    rust = new Child(P2PF, [
      'node', '--json', '--listen', '127.0.0.1:0', '--no-mdns', '--tool', 'echo',
      '--data-dir', path.join(data, 'rust'), '--bootstrap', js.addr,
    ])
    let ready
    do ready = JSON.parse(`{${await rust.expect('{')}`)
    while (ready.event !== 'ready')
    const echoed = await step(js.callPeer(ready.peer_id, 'echo', { from: 'js' }))
    assert.deepEqual(echoed.value.echo, { from: 'js' })
    assert.equal(echoed.provider, ready.peer_id)

    // `p2pf` (a short-lived Rust node of its own) reads what JavaScript put on the DHT and
    // calls the JavaScript tool.
    assert.ok((await step(js.dhtPut('mixed/from-js', 'hello from js'))) >= 1)
    const got = JSON.parse(
      await step(output(P2PF, ['dht', 'get', 'mixed/from-js', '--bootstrap', js.addr, '--json', '--data-dir', path.join(data, 'get')])),
    )
    assert.equal(got.records[0].value, 'hello from js')
    const called = JSON.parse(
      await step(
        output(P2PF, [
          'mcp', 'call', 'js-upper', '--args', '{"text":"from rust"}', '--peer', js.peerId,
          '--bootstrap', js.addr, '--json', '--data-dir', path.join(data, 'call'),
        ]),
      ),
    )
    assert.ok(JSON.stringify(called).includes('FROM RUST'), JSON.stringify(called))
  } finally {
    python.send('quit')
    if (rust) await rust.finish()
    await python.finish()
    if (js) await js.shutdown()
    fs.rmSync(data, { recursive: true, force: true })
  }
})
