// The Z-Wave side of doorwarden's zwave_js_server tests: zwave-js's own
// mock Z-Wave controller with one keypad door lock (Door Lock v4,
// Notification v8, User Code v1, Battery v1), served as a serial port over
// TCP on 127.0.0.1 for the real `zwave-server` to open as
// `tcp://127.0.0.1:<port>`.
//
// Why not zwave-js's `mock-server` command: it hands every TCP chunk to the
// mock controller as one Serial API frame, so it crashes ("does not start
// with SOF") as soon as TCP merges two frames, and it announces itself by
// mDNS on every interface. Here the byte stream is split into frames first,
// and nothing listens beyond 127.0.0.1.
//
// The test plays the person at the door through stdin, one command a line;
// every answer is one line on stdout:
//
//   manual lock|unlock          thumb-turn (Access Control 1/2)
//   keypad lock|unlock <user>   keypad with a user slot (Access Control 5/6)
//   jam                         the bolt jams (Access Control "Lock state" 11)
//   battery <percent>           the battery drops (unsolicited Battery Report)
//   stuck on|off                the bolt stops obeying Door Lock Operation Set
//   bolt?                       -> "bolt secured|unsecured"
//   code? <slot>                -> "code <slot> <status> <code or ->"
//
// On start it prints "LISTENING <port>".

import net from "node:net";
import readline from "node:readline";
import {
	BatteryCCGet,
	BatteryCCReport,
	DoorLockCCOperationReport,
	DoorLockCCOperationSet,
	DoorLockMode,
	NotificationCCReport,
} from "@zwave-js/cc";
import { CommandClasses, Duration } from "@zwave-js/core";
import { Faucet, ZWaveSerialFrameType } from "@zwave-js/serial";
import { createAndOpenMockedZWaveSerialPort } from "@zwave-js/serial/mock";
import {
	MockController,
	MockNode,
	createMockZWaveRequestFrame,
} from "@zwave-js/testing";
import {
	createDefaultMockControllerBehaviors,
	createDefaultMockNodeBehaviors,
} from "zwave-js/Testing";

const LOCK_NODE_ID = Number(process.env.LOCK_NODE_ID ?? 2);
// The mock Door Lock behaviour moves the bolt over this many milliseconds
// and reports it when done, like a motor would.
const TRAVEL_MS = Number(process.env.LOCK_TRAVEL_MS ?? 400);
// Key the stock Door Lock mock behaviour keeps the bolt under.
const BOLT = "DoorLock_currentMode";

// zwave-server killed in the middle of an exchange leaves the mock
// controller waiting for an ACK that never comes, and the mock rejects a
// promise nobody awaits; Node would end the process over it. A real Z-Wave
// stick just waits for the next host, and so does this one.
process.on("unhandledRejection", (e) => {
	console.error("mock: ignored after the host went away:", String(e?.message ?? e));
});

const SOF = 0x01;
const ACK = 0x06;
const NAK = 0x15;
const CAN = 0x18;

function say(line) {
	process.stdout.write(`${line}\n`);
}

const { serial, port: mockPort } = await createAndOpenMockedZWaveSerialPort();
const controller = await MockController.create({
	homeId: 0x7e570001,
	ownNodeId: 1,
	mockPort,
	serial,
});
controller.defineBehavior(...createDefaultMockControllerBehaviors());

const lock = await MockNode.create({
	id: LOCK_NODE_ID,
	controller,
	capabilities: {
		// Entry Control / Secure Keypad Door Lock
		genericDeviceClass: 0x40,
		specificDeviceClass: 0x03,
		commandClasses: [
			{
				ccId: CommandClasses["Door Lock"],
				version: 4,
				travelTime: TRAVEL_MS,
				// A bolt sensor and no door sensor: the door's own contact
				// sensor, when it has one, speaks for the door.
				doorSupported: false,
				boltSupported: true,
				latchSupported: false,
			},
			{
				ccId: CommandClasses.Notification,
				version: 8,
				notificationTypesAndEvents: {
					// Access Control: manual/RF/keypad (un)lock, jammed,
					// user code deleted/added.
					0x06: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0b, 0x0d, 0x0e],
				},
			},
			{ ccId: CommandClasses["User Code"], version: 1, numUsers: 10 },
			{ ccId: CommandClasses.Battery, version: 1 },
		],
	},
});
controller.addNode(lock);
lock.defineBehavior(...createDefaultMockNodeBehaviors());

let batteryLevel = 90;
let stuck = false;
lock.defineBehavior(
	{
		handleCC(ctrl, self, cc) {
			if (cc instanceof BatteryCCGet) {
				return {
					action: "sendCC",
					cc: new BatteryCCReport({
						nodeId: ctrl.ownNodeId,
						level: batteryLevel,
						isLow: batteryLevel <= 10,
					}),
				};
			}
		},
	},
	{
		// A bolt that never moves: the radio takes the command (the frame
		// is acknowledged), the motor does nothing, and the lock goes on
		// reporting where the bolt really is.
		handleCC(_ctrl, _self, cc) {
			if (stuck && cc instanceof DoorLockCCOperationSet) {
				return { action: "ok" };
			}
		},
	},
);

function bolt() {
	return lock.state.get(BOLT) ?? DoorLockMode.Unsecured;
}

async function send(cc) {
	await lock.sendToController(
		createMockZWaveRequestFrame(cc, { ackRequested: false }),
	);
}

async function accessControl(event, params) {
	await send(
		new NotificationCCReport({
			nodeId: controller.ownNodeId,
			notificationType: 0x06,
			notificationEvent: event,
			eventParameters: params,
		}),
	);
}

async function operationReport() {
	const mode = bolt();
	await send(
		new DoorLockCCOperationReport({
			nodeId: controller.ownNodeId,
			currentMode: mode,
			targetMode: mode,
			outsideHandlesCanOpenDoor: [true, true, true, true],
			insideHandlesCanOpenDoor: [true, true, true, true],
			duration: new Duration(0, "seconds"),
		}),
	);
}

async function moveBy(locked, eventLocked, eventUnlocked, params) {
	lock.state.set(BOLT, locked ? DoorLockMode.Secured : DoorLockMode.Unsecured);
	await accessControl(locked ? eventLocked : eventUnlocked, params);
	await operationReport();
}

async function control(line) {
	const [cmd, ...args] = line.trim().split(/\s+/);
	switch (cmd) {
		case "manual":
			await moveBy(args[0] === "lock", 0x01, 0x02);
			return "ok";
		case "keypad": {
			const user = Number(args[1]);
			if (!Number.isInteger(user) || user < 1 || user > 255) return "error user";
			await moveBy(args[0] === "lock", 0x05, 0x06, Uint8Array.from([user]));
			return "ok";
		}
		case "jam":
			await accessControl(0x0b);
			return "ok";
		case "battery":
			batteryLevel = Math.max(0, Math.min(100, Number(args[0]) || 0));
			await send(
				new BatteryCCReport({
					nodeId: controller.ownNodeId,
					level: batteryLevel,
					isLow: batteryLevel <= 10,
				}),
			);
			return "ok";
		case "stuck":
			stuck = args[0] === "on";
			return "ok";
		case "bolt?":
			return `bolt ${bolt() === DoorLockMode.Secured ? "secured" : "unsecured"}`;
		case "code?": {
			const slot = Number(args[0]);
			const status = lock.state.get(`UserCode_userIdStatus_${slot}`) ?? 0;
			const code = lock.state.get(`UserCode_userCode_${slot}`);
			return `code ${slot} ${status} ${code ? String(code) : "-"}`;
		}
		default:
			return `error unknown command ${cmd ?? ""}`;
	}
}

// The lock starts secured, as a front door should be.
lock.state.set(BOLT, DoorLockMode.Secured);

// Serial API frames out of a TCP byte stream: a single ACK/NAK/CAN byte, or
// SOF, a length, and that many bytes (type, function, payload, checksum).
function splitFrames(buffer) {
	const frames = [];
	let at = 0;
	while (at < buffer.length) {
		const b = buffer[at];
		if (b === ACK || b === NAK || b === CAN) {
			frames.push(buffer.subarray(at, at + 1));
			at += 1;
		} else if (b === SOF) {
			if (at + 2 > buffer.length) break;
			const total = buffer[at + 1] + 2;
			if (at + total > buffer.length) break;
			frames.push(buffer.subarray(at, at + total));
			at += total;
		} else {
			// Garbage between frames: the real controller skips it too.
			at += 1;
		}
	}
	return { frames, rest: buffer.subarray(at) };
}

const faucet = new Faucet(serial.readable);
const server = net.createServer((socket) => {
	const writable = new WritableStream({
		write(chunk) {
			if (chunk.type !== ZWaveSerialFrameType.SerialAPI) return;
			socket.write(
				typeof chunk.data === "number" ? Uint8Array.from([chunk.data]) : chunk.data,
			);
		},
	});
	faucet.connect(writable);
	let pending = Buffer.alloc(0);
	let chain = Promise.resolve();
	socket.on("data", (data) => {
		const { frames, rest } = splitFrames(Buffer.concat([pending, data]));
		pending = Buffer.from(rest);
		for (const frame of frames) {
			chain = chain.then(() =>
				serial.writeAsync(Uint8Array.from(frame)).catch((e) => {
					console.error("mock serial write failed", e);
				}),
			);
		}
	});
	socket.on("error", () => {});
	socket.on("close", () => {
		faucet.disconnect();
		void writable.close().catch(() => {});
	});
});
server.maxConnections = 1;
server.listen({ host: "127.0.0.1", port: Number(process.env.MOCK_PORT ?? 0) }, () => {
	say(`LISTENING ${server.address().port}`);
});

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
	queue = queue.then(async () => {
		try {
			say(await control(line));
		} catch (e) {
			say(`error ${String(e?.message ?? e).split("\n")[0]}`);
		}
	});
});
// The test going away (stdin closed) ends the mock.
rl.on("close", () => {
	controller.destroy();
	server.close();
	process.exit(0);
});
