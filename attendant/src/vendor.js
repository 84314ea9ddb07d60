// Everything the attendant's page needs from npm, bundled at install time into one classic
// script (www/vendor/attendant-vendor.js): MQTT.js and zxing-cpp's own WebAssembly build
// (zxing-wasm's reader). The station serves no CDN, so the .wasm file is copied beside the
// bundle (src/copy-wasm.js) and located there, relative to the page.
import mqtt from "mqtt";
import { prepareZXingModule, readBarcodes } from "zxing-wasm/reader";

export function prepareScanner(base) {
  prepareZXingModule({
    overrides: {
      locateFile: (path, prefix) => (path.endsWith(".wasm") ? new URL(`vendor/${path}`, base).href : prefix + path),
    },
  });
}

// One frame (ImageData) in, the QR codes' texts out.
export async function readQr(imageData) {
  const results = await readBarcodes(imageData, { formats: ["QRCode"], tryHarder: true, maxNumberOfSymbols: 1 });
  return results.filter((r) => r.isValid).map((r) => r.text);
}

export { mqtt };
