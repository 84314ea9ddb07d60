// Runs tests/micropython/safety_checks.py (or the check script named as the first argument,
// e.g. update_checks) on the real MicroPython interpreter (WebAssembly).
// The project's hal/ sources, the fake `machine` module and the vectors are copied into the
// interpreter's own filesystem; nothing from CPython is involved.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs";
import path from "path";
import url from "url";

const here = path.dirname(url.fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const files = [
  ["hal/__init__.py", root], ["hal/crc16.py", root], ["hal/relay_proto.py", root], ["hal/dart_proto.py", root], ["hal/dart_master.py", root], ["hal/ecr_proto.py", root], ["hal/tls_proto.py", root],
  ["hal/firmware/__init__.py", root], ["hal/firmware/board_core.py", root], ["hal/firmware/main.py", root],
  ["hal/firmware/fw_update.py", root], ["hal/firmware/boot_guard.py", root], ["hal/fw_update.py", root],
  ["machine.py", here], ["vectors.py", here], ["safety_checks.py", here], ["update_checks.py", here],
];
const script = process.argv[2] || "safety_checks";
let out = "";
const mp = await loadMicroPython({
  heapsize: 4 * 1024 * 1024,
  stdout: (line) => { out += line + "\n"; process.stdout.write(line + "\n"); },
  stderr: (line) => process.stderr.write(line + "\n"),
});
for (const dir of ["/t", "/t/hal", "/t/hal/firmware"]) mp.FS.mkdir(dir);
for (const [name, base] of files) mp.FS.writeFile("/t/" + name, fs.readFileSync(path.join(base, name)));
try {
  mp.runPython(`
import sys
sys.path.insert(0, "/t")
print("interpreter " + sys.implementation.name + " " + ".".join(str(v) for v in sys.implementation.version[:3]))
import ${script}
`);
} catch (err) {
  console.error("MicroPython raised: " + err.message);
  process.exit(2);
}
process.exit(/ 0 failed$/m.test(out) ? 0 : 1);
