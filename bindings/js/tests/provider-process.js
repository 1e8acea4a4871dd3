// A provider node in its own process, driven by a test over stdin/stdout.
//
// It starts a node on loopback, registers a tool and a tool that throws, and subscribes to
// "news", then prints `addr <peer id>@<ip:port>`. Each gossip message it receives is
// printed as `got <data> from <author>`. `put KEY VALUE` stores a DHT value and prints
// `stored <n>`. On `quit` (or end of input) it shuts down, binds its own port again to
// prove it was released, and prints `released <port>`; then the process exits by itself
// (nothing of the node keeps it alive).
'use strict'

const dgram = require('node:dgram')
const readline = require('node:readline')

const { Node } = require('..')

const SCHEMA = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] }

async function main() {
  const node = await Node.start({ listen: '127.0.0.1:0', mdns: false })
  await node.registerTool('reverse', SCHEMA, async (args) => [...args.text].reverse().join(''))
  await node.registerTool('fail', null, async () => {
    throw new Error('this tool always fails')
  })
  const sub = await node.subscribe('news')
  const relaying = (async () => {
    for await (const message of sub) console.log(`got ${message.data} from ${message.author}`)
  })()
  console.log(`addr ${node.addr}`)
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    const [command, key, ...value] = line.trim().split(' ')
    if (command === 'put') console.log(`stored ${await node.dhtPut(key, value.join(' '))}`)
    else if (command === 'quit') break
  }
  lines.close()
  const port = node.port
  await node.shutdown()
  await relaying // ends: the node shut down
  const socket = dgram.createSocket('udp4')
  await new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, '127.0.0.1', resolve)
  })
  socket.close()
  console.log(`released ${port}`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
