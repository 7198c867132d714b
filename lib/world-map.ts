// Country outlines for the console's fraud map, drawn offline (no tile servers). Natural Earth's
// 1:110m countries from the world-atlas package when it is installed (true coastlines); otherwise the
// borders that ship with @rapideditor/country-coder (already used for scan countries): exact on land,
// but drawn as coarse hulls over the sea. Either is reduced to half-degree points, about 110 KB.
import * as countryCoder from "@rapideditor/country-coder";

export interface WorldShape {
  /** ISO 3166-1 alpha-2 of the country the shape belongs to (England → GB). */
  c: string;
  n: string;
  /** Outer rings as [lng, lat] pairs; a ring crossing the antimeridian runs past ±180. */
  p: [number, number][][];
}

const STEP = 0.5;
let cached: string | null = null;

interface Feature {
  code: string | null;
  name: string;
  polygons: number[][][][];
}

/** TopoJSON (world-atlas) → polygons in degrees: arcs are delta-encoded, quantised, shared. */
export function decodeTopology(topo: any, objectName: string): { id: string | null; name: string; polygons: number[][][][] }[] {
  const [sx, sy] = topo.transform?.scale ?? [1, 1];
  const [tx, ty] = topo.transform?.translate ?? [0, 0];
  const arcs: number[][][] = topo.arcs.map((arc: number[][]) => {
    let x = 0;
    let y = 0;
    return arc.map(([dx, dy]) => {
      x += dx;
      y += dy;
      return topo.transform ? [x * sx + tx, y * sy + ty] : [dx, dy];
    });
  });
  const ring = (ids: number[]) => {
    const pts: number[][] = [];
    for (const i of ids) {
      const a = i < 0 ? [...arcs[~i]].reverse() : arcs[i];
      pts.push(...(pts.length ? a.slice(1) : a));
    }
    return pts;
  };
  return topo.objects[objectName].geometries
    .filter((g: any) => g.type === "Polygon" || g.type === "MultiPolygon")
    .map((g: any) => ({
      id: g.id === undefined ? null : String(g.id),
      name: g.properties?.name ?? String(g.id ?? ""),
      polygons: (g.type === "Polygon" ? [g.arcs] : g.arcs).map((poly: number[][]) => poly.map(ring)),
    }));
}

function sourceFeatures(): Feature[] {
  try {
    // Optional: present when the world-atlas package is installed.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const topo = require("world-atlas/countries-110m.json");
    return decodeTopology(topo, "countries").map((f) => ({ code: f.id ? countryCoder.iso1A2Code(f.id.padStart(3, "0")) : null, name: f.name, polygons: f.polygons }));
  } catch {
    return ((countryCoder as any).borders.features as any[])
      .filter((f) => f.geometry)
      .map((f) => ({
        code: countryCoder.iso1A2Code(f.properties.id) ?? f.properties.country ?? null,
        name: f.properties.nameEn,
        polygons: f.geometry.type === "Polygon" ? [f.geometry.coordinates] : f.geometry.coordinates,
      }));
  }
}

export function worldShapes(features: Feature[] = sourceFeatures()): WorldShape[] {
  const out: WorldShape[] = [];
  const round = (v: number) => Math.round(v / STEP) * STEP;
  for (const f of features) {
    const code = f.code;
    if (!code) continue;
    const polygons = f.polygons;
    const rings: [number, number][][] = [];
    for (const poly of polygons) {
      const ring: [number, number][] = [];
      let last: [number, number] | null = null;
      let prevX: number | null = null;
      for (const [x0, y] of poly[0]) {
        // Rings crossing the antimeridian (Russia, Fiji) are unwrapped into one continuous outline
        // (longitudes past ±180); the map draws those a second time shifted by 360°.
        let x = x0;
        if (prevX !== null) while (x - prevX > 180) x -= 360;
        if (prevX !== null) while (x - prevX < -180) x += 360;
        prevX = x;
        const q: [number, number] = [round(x), round(y)];
        if (last && Math.abs(q[0] - last[0]) < STEP && Math.abs(q[1] - last[1]) < STEP) continue;
        ring.push(q);
        last = q;
      }
      if (ring.length >= 3) rings.push(ring);
    }
    if (rings.length) out.push({ c: code, n: f.name, p: rings });
  }
  return out;
}

/** The shapes as JSON text, built once per process. */
export function worldShapesJson(): string {
  cached ??= JSON.stringify(worldShapes());
  return cached;
}
