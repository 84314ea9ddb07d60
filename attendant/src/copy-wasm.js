// The zxing-cpp reader's WebAssembly file goes beside the bundle: the page loads it from the
// station, never from a CDN.
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("www/vendor", { recursive: true });
copyFileSync("node_modules/zxing-wasm/dist/reader/zxing_reader.wasm", "www/vendor/zxing_reader.wasm");
