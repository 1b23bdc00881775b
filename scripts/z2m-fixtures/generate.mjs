// Feeds Zigbee2MQTT's own device converters (the npm package
// zigbee-herdsman-converters, version pinned in package-lock.json) the
// Zigbee messages real locks send, and writes the MQTT payloads Zigbee2MQTT
// would publish for them as doorwarden's test fixtures
// (tests/fixtures/zigbee2mqtt/converted/<model>.json).
//
// Run on demand, not by the tests:   cd scripts/z2m-fixtures && npm ci && node generate.mjs
// The fixtures it writes are committed; tests/devices.rs reads them.
//
// What is Zigbee2MQTT's and what is ours: the device definitions (which
// converters a model uses, its endpoint, its PIN slot count) and the
// conversion of each Zigbee frame come from the package. The frames are
// ours: each is the door lock cluster (closuresDoorLock) attribute report
// or command a lock of that model sends for the event named, as the Zigbee
// Cluster Library defines it. Zigbee2MQTT then publishes, as its
// `cache_state` default does, the device's last known state merged with
// the new values, plus `linkquality`; `action*` keys are published with the
// event and not kept in the cache (its receive path does both).

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as zhc from "zigbee-herdsman-converters";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "tests", "fixtures", "zigbee2mqtt", "converted");
const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8"));
const version = lock.packages["node_modules/zigbee-herdsman-converters"].version;

zhc.setLogger({
    debug: () => {},
    info: () => {},
    warning: (m) => console.warn(m),
    error: (m) => console.error(m),
});

// A device as zigbee-herdsman describes it, enough for definition lookup
// and for the converters (which read the endpoint and its id).
function device(modelID, manufacturerName, endpointId) {
    const endpoint = {
        ID: endpointId,
        getDevice: () => dev,
        command: async () => {},
        read: async () => {},
    };
    const dev = {
        ieeeAddr: "0x000d6f0011aa22bb",
        networkAddress: 0x1a2b,
        modelID,
        manufacturerName,
        type: "EndDevice",
        powerSource: "Battery",
        interviewCompleted: true,
        endpoints: [endpoint],
        getEndpoint: (id) => (id === endpointId ? endpoint : undefined),
        customClusters: {},
        meta: {},
        save: () => {},
    };
    return { dev, endpoint };
}

// Zigbee frames, by what they are (ZCL door lock cluster, 0x0101).
const lockState = (state) => ({ type: "attributeReport", data: { lockState: state } }); // 0 not fully locked, 1 locked, 2 unlocked
const doorState = (state) => ({ type: "attributeReport", data: { doorState: state } }); // 2 jammed
const battery = (halfPercent) => ({ cluster: "genPowerCfg", type: "attributeReport", data: { batteryPercentageRemaining: halfPercent } });
// opereventsrc: 0 keypad, 1 rf, 2 manual, 3 rfid; opereventcode: 1 lock, 2 unlock, 5 unlock
// failure (bad PIN), 7 one-touch lock, 9 key unlock, 10 auto lock, 13 manual lock, 14 manual unlock
const operation = (source, code, user) => ({
    type: "commandOperationEventNotification",
    data: { opereventsrc: source, opereventcode: code, userid: user, pin: "", zigbeelocaltime: 0, data: 0 },
});
// programeventcode: 2 PIN added, 3 PIN deleted
const programming = (source, code, user) => ({
    type: "commandProgrammingEventNotification",
    data: { programeventsrc: source, programeventcode: code, userid: user, pin: "", usertype: 0, userstatus: 1, zigbeelocaltime: 0, data: "" },
});
// userstatus: 1 enabled, 0 available
const pinRead = (user, status, pin) => ({
    type: "commandGetPinCodeRsp",
    data: { userid: user, userstatus: status, usertype: 0, pincodevalue: pin },
});

// The models, and the story each tells. Names are the fixture's message
// names, which the translator tests use.
const MODELS = [
    {
        file: "yale_yrd226ha2619.json",
        modelID: "YRD226 TSDB",
        manufacturer: "Yale",
        endpoint: 1,
        topic: "zigbee2mqtt/Front door",
        story: [
            ["battery", battery(174)],
            ["locked", lockState(1)],
            ["keypad_unlock_event", operation(0, 2, 3)],
            ["unlocked", lockState(2)],
            ["auto_relock_event", operation(2, 10, 0)],
            ["locked_again", lockState(1)],
            ["pin_code_added", programming(1, 2, 7)],
            ["pin_read_back", pinRead(7, 1, "482913")],
            ["not_fully_locked", lockState(0)],
        ],
    },
    {
        file: "kwikset_99140_002.json",
        modelID: "SMARTCODE_DEADBOLT_10_L",
        manufacturer: "Kwikset",
        endpoint: 2,
        topic: "zigbee2mqtt/Back door",
        story: [
            ["battery", battery(128)],
            ["locked", lockState(1)],
            ["rf_unlock_event", operation(1, 2, 0)],
            ["unlocked", lockState(2)],
            ["locked_again", lockState(1)],
            ["key_unlock_event", operation(2, 9, 0)],
            ["wrong_pin", operation(0, 5, 65535)],
            ["pin_code_deleted", programming(1, 3, 12)],
        ],
    },
    {
        file: "schlage_be468.json",
        modelID: "BE468",
        manufacturer: "Schlage",
        endpoint: 1,
        topic: "zigbee2mqtt/Side door",
        story: [
            ["battery", battery(150)],
            ["locked", lockState(1)],
            ["keypad_unlock_event", operation(0, 2, 2)],
            ["unlocked", lockState(2)],
            ["manual_lock_event", operation(2, 13, 0)],
            ["one_touch_lock_event", operation(0, 7, 255)],
            ["keypad_lock_event", operation(0, 1, 2)],
            ["not_fully_locked", lockState(0)],
        ],
    },
    {
        file: "danalock_v3_btzb.json",
        modelID: "V3-BTZB",
        manufacturer: "Danalock",
        endpoint: 1,
        topic: "zigbee2mqtt/Garden gate",
        story: [
            ["battery", battery(198)],
            ["locked", lockState(1)],
            ["manual_unlock_event", operation(2, 14, 0)],
            ["unlocked", lockState(2)],
            ["door_state_jammed", doorState(2)],
        ],
    },
];

// Zigbee2MQTT keeps these out of its state cache: they describe one event.
const EVENT_KEYS = /^action/;

async function convert(model) {
    const { dev, endpoint } = device(model.modelID, model.manufacturer, model.endpoint);
    const definition = await zhc.findByDevice(dev);
    if (!definition) {
        throw new Error(`zigbee-herdsman-converters ${version} has no definition for ${model.modelID}`);
    }
    // Zigbee2MQTT's `expose_pin` device option: without it the read-back
    // carries the status only.
    const options = { expose_pin: true };
    let cache = {};
    const messages = {};
    let linkquality = 112;
    for (const [name, frame] of model.story) {
        const cluster = frame.cluster ?? "closuresDoorLock";
        const msg = {
            type: frame.type,
            cluster,
            data: frame.data,
            endpoint,
            device: dev,
            linkquality,
            groupID: 0,
            meta: { zclTransactionSequenceNumber: 1, manufacturerCode: null, frameControl: {} },
        };
        const meta = { device: dev, logger: console, state: cache, deviceExposesChanged: () => {} };
        const payload = {};
        for (const converter of definition.fromZigbee) {
            const types = Array.isArray(converter.type) ? converter.type : [converter.type];
            if (converter.cluster !== cluster || !types.includes(frame.type)) continue;
            const converted = await converter.convert(definition, msg, () => {}, options, meta);
            if (converted) Object.assign(payload, converted);
        }
        if (Object.keys(payload).length === 0) {
            throw new Error(`${model.modelID}: no converter took "${name}"`);
        }
        zhc.postProcessConvertedFromZigbeeMessage(definition, payload, options, dev);
        const published = { ...cache, ...payload, linkquality };
        messages[name] = published;
        cache = Object.fromEntries(Object.entries(published).filter(([k]) => !EVENT_KEYS.test(k)));
        linkquality = linkquality === 112 ? 108 : 112;
    }
    return {
        generated: `scripts/z2m-fixtures/generate.mjs with zigbee-herdsman-converters ${version}; do not edit, run it again`,
        model: `${definition.vendor} ${definition.model} (${definition.description})`,
        zigbee_model: model.modelID,
        topic: model.topic,
        messages,
    };
}

mkdirSync(out, { recursive: true });
for (const model of MODELS) {
    const fixture = await convert(model);
    const path = join(out, model.file);
    writeFileSync(path, JSON.stringify(fixture, null, 2) + "\n");
    console.log(`${path}: ${fixture.model}, ${Object.keys(fixture.messages).length} messages`);
}
